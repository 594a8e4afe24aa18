"""Rendering a Video Studio timeline with real MP4s (PyAV both ways): the export's size, rate and frame
count, each cut's frames (trims, repeated and dropped frames), letterboxing, progress and cancellation,
refused timelines that leave nothing behind, and a clip's last frame as PNG.

`make_mp4` gives frame i of a clip the shade (r + 3i, g, b - 3i): the shade seen in an output frame says
which source frame it shows (to within one frame: H.264 is lossy)."""

from __future__ import annotations

import io
import itertools
import math
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from PIL import Image

from mmstudio.domain.video import render as render_module
from mmstudio.domain.video.render import (
    Cut,
    RenderCancelled,
    RenderResult,
    RenderSpec,
    last_frame,
    render,
)
from mmstudio.errors import InvalidRequest, UnsupportedMediaType
from tests.fakes.videos import make_mp4

Rgb = tuple[int, int, int]
TOLERANCE = 12  # per channel, after two H.264 encodes


@dataclass(frozen=True)
class Clip:
    path: Path
    width: int
    height: int
    fps: int
    color: Rgb

    def shade(self, index: int) -> Rgb:
        r, g, b = self.color
        return min(255, r + 3 * index), g, max(0, b - 3 * index)

    def index_of(self, pixel: Rgb) -> float:
        """Which source frame a pixel's shade comes from (r rises and b falls by 3 a frame)."""
        r, _, b = self.color
        return ((pixel[0] - r) + (b - pixel[2])) / 6


SIZES = [(64, 48), (48, 64), (96, 54)]  # 4:3, portrait 3:4, 16:9 (the export's own aspect)
RATES = [8, 12, 25]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """Ten 4 s clips, sizes and frame rates mixed, each its own colour (green alone tells them apart)."""
    folder = tmp_path_factory.mktemp("clips")
    made = []
    for i in range(10):
        (width, height), fps = SIZES[i % 3], RATES[(i + i // 3) % 3]
        color = (10 + 9 * i, 30 + 22 * i, 230 - 6 * i)
        path = folder / f"clip{i}.mp4"
        path.write_bytes(make_mp4(width, height, seconds=4, fps=fps, color=color))
        made.append(Clip(path, width, height, fps, color))
    return made


def decoded(path: Path) -> tuple[av.video.stream.VideoStream, list[Image.Image]]:
    """The output's video stream (checked to be its only stream) and every frame as an image."""
    with av.open(str(path)) as container:
        assert len(container.streams) == 1 and not container.streams.audio
        stream = container.streams.video[0]
        return stream, [frame.to_image() for frame in container.decode(stream)]


def close(pixel: Rgb, expected: Rgb, tolerance: int = TOLERANCE) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def left_over(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_forty_second_timeline_renders_every_cut_at_the_export_size_and_rate(
    clips: list[Clip], tmp_path: Path
) -> None:
    cuts = [Cut(clip.path) for clip in clips]
    cuts[3] = Cut(clips[3].path, start_s=1.0)  # trimmed in: 3 s
    cuts[6] = Cut(clips[6].path, end_s=2.5)  # trimmed out: 2.5 s
    cuts[8] = Cut(clips[8].path, end_s=99.0, loop=True)  # past the end: cut back to 4 s
    spec = RenderSpec(width=128, height=72, fps=12)
    out = tmp_path / "export.mp4"

    result = render(cuts, spec, out)

    counts = [round((min(cut.end_s or 4.0, 4.0) - cut.start_s) * spec.fps) for cut in cuts]
    assert sum(counts) == 12 * 37.5
    assert result == RenderResult(duration_s=37.5, frames=sum(counts))
    stream, frames = decoded(out)
    assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    assert (stream.width, stream.height, stream.average_rate) == (128, 72, 12)
    assert len(frames) == sum(counts)
    assert left_over(tmp_path) == ["export.mp4"]

    first = 0
    for clip, cut, count in zip(clips, cuts, counts, strict=True):
        # Every output frame k shows the source frame at or just before in + k/fps (±1 for the lossy codec).
        for k in range(count):
            index = math.floor((cut.start_s + k / spec.fps) * clip.fps + 1e-6)
            pixel = frames[first + k].getpixel((64, 36))
            assert close(pixel, clip.shade(index)), (clip, k, pixel, clip.shade(index))
            if 0 < clip.shade(index)[0] < 255 and 0 < clip.shade(index)[2] < 255:
                assert abs(clip.index_of(pixel) - index) <= 1, (clip, k, pixel, index)
        middle = frames[first + count // 2]
        aspect = clip.width / clip.height
        if aspect < 16 / 9:  # narrower than the export: black bars left and right, full height
            assert close(middle.getpixel((1, 36)), (0, 0, 0)), clip
            assert close(middle.getpixel((126, 36)), (0, 0, 0)), clip
            assert middle.getpixel((64, 1))[1] == pytest.approx(clip.color[1], abs=TOLERANCE)
        else:  # 16:9 fills the frame edge to edge
            assert middle.getpixel((1, 36))[1] == pytest.approx(clip.color[1], abs=TOLERANCE)
        first += count


def test_the_portrait_clip_is_letterboxed_to_its_own_width(clips: list[Clip], tmp_path: Path) -> None:
    portrait = clips[1]  # 48x64 into 128x72: scaled to 54x72, centred (37 px of black either side)
    render([Cut(portrait.path)], RenderSpec(128, 72, 8), tmp_path / "out.mp4")
    _, frames = decoded(tmp_path / "out.mp4")
    row = [frames[0].getpixel((x, 36)) for x in range(128)]
    coloured = [x for x, pixel in enumerate(row) if pixel[1] > portrait.color[1] / 2]
    assert coloured[0] == pytest.approx(37, abs=2) and coloured[-1] == pytest.approx(90, abs=2)
    assert all(close(pixel, (0, 0, 0)) for pixel in row[:33] + row[95:])


def test_a_trimmed_slow_clip_starts_at_its_in_point_and_repeats_frames(tmp_path: Path) -> None:
    source = tmp_path / "eight.mp4"
    color = (40, 120, 200)
    source.write_bytes(make_mp4(64, 36, seconds=4, fps=8, color=color))
    clip = Clip(source, 64, 36, 8, color)

    result = render([Cut(source, start_s=1.0, end_s=3.0)], RenderSpec(64, 36, 24), tmp_path / "out.mp4")

    assert result.frames == 48
    _, frames = decoded(tmp_path / "out.mp4")
    pixels = [frame.getpixel((32, 18)) for frame in frames]
    assert close(pixels[0], clip.shade(8))  # 1.0 s into an 8 fps clip is its frame 8
    assert abs(clip.index_of(pixels[0]) - 8) <= 1
    for k, pixel in enumerate(pixels):  # each source frame three times: 8, 8, 8, 9, 9, 9, ... 23
        assert abs(clip.index_of(pixel) - (8 + k // 3)) <= 1, (k, pixel)


def test_frame_rate_normalisation_shows_the_latest_frame_at_or_before_each_output_time() -> None:
    def picked(source_fps: float, fps: int, count: int, start_s: float = 0.0, frames: int = 100) -> list[int]:
        times = ((i / source_fps, i) for i in range(frames))
        return list(render_module._pick(times, start_s, fps, count))

    assert picked(8, 24, 9) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # repeated
    assert picked(30, 24, 8) == [0, 1, 2, 3, 5, 6, 7, 8]  # frame 4 dropped
    assert picked(25, 12, 4, start_s=1.0) == [25, 27, 29, 31]
    assert picked(8, 8, 4, frames=2) == [0, 1, 1, 1]  # past the last frame: the last one
    late = (((i + 2) / 8, i) for i in range(10))  # a seek that landed after the in point
    assert list(render_module._pick(late, 0.0, 8, 4)) == [0, 0, 0, 1]


def test_an_interpolated_slow_clip_blends_the_frames_between_its_own(tmp_path: Path) -> None:
    """8 fps to 24 fps: output frames 0, 3, 6 are source frames 0, 1, 2; those between are a third and
    two thirds of the way from one to the next (frame index 1/3, 2/3, ... by the shade)."""
    source = tmp_path / "eight.mp4"
    color = (40, 120, 200)
    source.write_bytes(make_mp4(64, 36, seconds=2, fps=8, color=color))
    clip = Clip(source, 64, 36, 8, color)

    render([Cut(source, interpolate=True)], RenderSpec(64, 36, 24), tmp_path / "smooth.mp4")
    render([Cut(source)], RenderSpec(64, 36, 24), tmp_path / "repeated.mp4")

    smooth = [clip.index_of(f.getpixel((32, 18))) for f in decoded(tmp_path / "smooth.mp4")[1]]
    repeated = [clip.index_of(f.getpixel((32, 18))) for f in decoded(tmp_path / "repeated.mp4")[1]]
    assert len(smooth) == len(repeated) == 48
    for k in range(45):  # up to the last source frame (frame 15 at 1.875 s), past which it is held
        assert abs(smooth[k] - k / 3) <= 0.5, (k, smooth[k])
        assert abs(repeated[k] - k // 3) <= 0.5, (k, repeated[k])
    assert any(abs(a - b) >= 0.5 for a, b in zip(smooth, repeated, strict=True))


def test_blending_weighs_the_two_frames_around_each_output_time() -> None:
    def between(source_fps: float, fps: int, count: int, frames: int = 100) -> list[tuple[int, int, float]]:
        times = ((i / source_fps, i) for i in range(frames))
        return [(a, b, round(w, 3)) for a, b, w in render_module._pick_between(times, 0.0, fps, count)]

    # on a source frame's own time the weight is 0: that frame, as it is
    assert between(8, 24, 4) == [(0, 1, 0.0), (0, 1, 0.333), (0, 1, 0.667), (1, 2, 0.0)]
    assert between(8, 8, 4, frames=2)[-1] == (1, 1, 0.0)  # past the last frame: the last one alone
    assert between(30, 24, 2)[1] == (1, 2, 0.25)  # 1/24 s lies a quarter past frame 1 (1/30 s)


def test_progress_rises_to_100_and_cancelling_leaves_nothing(clips: list[Clip], tmp_path: Path) -> None:
    cuts = [Cut(clips[i].path) for i in (0, 2, 4)]
    spec = RenderSpec(96, 54, 12)
    seen: list[float] = []

    render(cuts, spec, tmp_path / "done.mp4", progress=seen.append)

    assert seen[-1] == 100 and all(a < b for a, b in itertools.pairwise(seen))
    assert 0 < seen[0] < 5
    for cut_end in (100 / 3, 200 / 3):  # reported at the end of each cut
        assert any(value == pytest.approx(cut_end) for value in seen)
    assert len(seen) <= 101

    seen.clear()
    out = tmp_path / "cancelled.mp4"
    with pytest.raises(RenderCancelled, match="the export was cancelled"):
        render(cuts, spec, out, progress=seen.append, cancelled=lambda: bool(seen) and seen[-1] >= 10)
    assert 10 <= seen[-1] < 20  # stopped within a few frames, in the middle of the first cut
    assert not out.exists()
    assert left_over(tmp_path) == ["done.mp4"]


@pytest.mark.parametrize(
    ("start_s", "end_s", "message", "field"),
    [
        (9.0, None, r"^clip 2: the in point 9\.0 s is past its end \(4\.0 s\)$", "clips[1].start_s"),
        (4.0, None, r"^clip 2: the in point 4\.0 s is past its end \(4\.0 s\)$", "clips[1].start_s"),
        (
            -0.5,
            None,
            r"^clip 2: the in point -0\.5 s is before its start \(0\.0 s to",
            "clips[1].start_s",
        ),
        (2.0, 2.0, r"^clip 2: the out point 2\.0 s is not after the in point 2\.0 s", "clips[1].end_s"),
        (2.0, 1.0, r"^clip 2: the out point 1\.0 s .*\(up to 4\.0 s allowed\)$", "clips[1].end_s"),
        (1.0, 1.02, r"^clip 2: the window 1\.0-1\.02 s is shorter than one frame at 12 fps$", "clips[1]"),
    ],
)
def test_a_window_outside_its_clip_is_refused_naming_the_clip(
    clips: list[Clip], tmp_path: Path, start_s: float, end_s: float | None, message: str, field: str
) -> None:
    out = tmp_path / "out.mp4"
    cuts = [Cut(clips[1].path), Cut(clips[0].path, start_s=start_s, end_s=end_s)]
    with pytest.raises(InvalidRequest, match=message) as caught:
        render(cuts, RenderSpec(64, 48, 12), out)
    assert caught.value.field == field
    assert left_over(tmp_path) == []


def test_a_bad_spec_or_an_empty_timeline_is_refused(clips: list[Clip], tmp_path: Path) -> None:
    cuts = [Cut(clips[0].path)]
    out = tmp_path / "out.mp4"
    with pytest.raises(InvalidRequest, match="the timeline has no clips") as caught:
        render([], RenderSpec(64, 48, 12), out)
    assert caught.value.field == "clips"
    for spec, field in [
        (RenderSpec(63, 48, 12), "width"),
        (RenderSpec(64, 47, 12), "height"),
        (RenderSpec(0, 48, 12), "width"),
        (RenderSpec(64, 48, 0), "fps"),
    ]:
        with pytest.raises(InvalidRequest, match="must be") as caught:
            render(cuts, spec, out)
        assert caught.value.field == field
        assert field in caught.value.message or "frame rate" in caught.value.message
    assert left_over(tmp_path) == []


def silent_wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\0\0" * 8000)
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a video at all", r"^clip 3 is not a readable video"),
        (None, r"^clip 3 is not a readable video"),  # no such file
        (silent_wav(), r"^clip 3 has no video stream$"),
    ],
)
def test_a_clip_that_is_not_a_video_is_unsupported(
    clips: list[Clip], tmp_path: Path, content: bytes | None, message: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "bad.mp4"
    if content is not None:
        bad.write_bytes(content)
    out = tmp_path / "out.mp4"
    with pytest.raises(UnsupportedMediaType, match=message) as caught:
        render([Cut(clips[0].path), Cut(clips[1].path), Cut(bad)], RenderSpec(64, 48, 12), out)
    assert caught.value.field == "clips[2]"
    assert left_over(tmp_path) == ["in"]


def test_a_failed_render_keeps_an_earlier_export_and_a_good_one_replaces_it(
    clips: list[Clip], tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the earlier export")
    with pytest.raises(RenderCancelled):
        render([Cut(clips[0].path)], RenderSpec(64, 48, 8), out, cancelled=lambda: True)
    assert out.read_bytes() == b"the earlier export"
    assert render([Cut(clips[0].path, end_s=1.0)], RenderSpec(64, 48, 8), out).frames == 8
    assert len(decoded(out)[1]) == 8
    assert left_over(tmp_path) == ["out.mp4"]


def test_last_frame_is_the_final_frame_as_png(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    color = (40, 120, 200)
    source.write_bytes(make_mp4(64, 48, seconds=2, fps=8, color=color))

    png = last_frame(source)

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (64, 48))
    clip = Clip(source, 64, 48, 8, color)
    pixel = image.convert("RGB").getpixel((32, 24))
    assert close(pixel, clip.shade(15)) and abs(clip.index_of(pixel) - 15) <= 1


def test_last_frame_of_something_else_is_unsupported(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"plain text")
    with pytest.raises(UnsupportedMediaType, match="cannot be decoded"):
        last_frame(bad)
    audio = tmp_path / "sound.wav"
    audio.write_bytes(silent_wav())
    with pytest.raises(UnsupportedMediaType, match="no video stream"):
        last_frame(audio)
