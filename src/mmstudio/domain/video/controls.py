"""How each Video Studio control reaches one model: as a parameter of its own ("native"), in plain words
inside the prompt ("via prompt"), done by mmstudio when it exports the film ("applied at export"), or not
at all ("not used by this model").

`plan_shot` gives both the marks the page shows and what Generate sends, from the same decisions, so the
panel can never say one thing while another goes upstream:

- camera: a model with camera moves (`VideoCapabilities.camera_moves`, one per shot) gets the strongest
  move it has as its parameter and any other axis in words; any other model gets it all in words
  ("slow pan right, slight zoom out").
- tunes (stability, amplitude, coherence): no vendor takes them, so they are words too ("lively motion,
  very steady footage").
- loop: a model that takes an end frame gets the start frame as its end frame (the shot ends where it
  began); without that, a loop is asked for in words.
- interpolate: frames are blended, not repeated, when the export changes the clip's frame rate.
- seed, negative prompt, duration, start and end frame: sent where the model takes them, else left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mmstudio.domain.video.projects import ShotSettings
from mmstudio.providers.media.video_base import CameraMove, VideoCapabilities

NATIVE = "native"
VIA_PROMPT = "via prompt"
NATIVE_AND_PROMPT = "native + via prompt"  # the strongest camera move as a parameter, the others in words
AT_EXPORT = "applied at export"
UNUSED = "not used by this model"

STILL = 0.05  # an axis below this is no movement at all
LOOP_WORDS = "a seamless loop: the last frame matches the first"

# Each camera axis: the move for a negative value, the move for a positive one.
CAMERA_AXES: Mapping[str, tuple[str, str]] = {
    "pan_x": ("pan_left", "pan_right"),
    "pan_y": ("pan_down", "pan_up"),
    "zoom": ("zoom_out", "zoom_in"),
    "tilt": ("tilt_down", "tilt_up"),
    "roll": ("roll_left", "roll_right"),
}
# Each tune: what a slight, a middling and a strong value asks for.
TUNE_WORDS: Mapping[str, tuple[str, str, str]] = {
    "amplitude": ("subtle motion", "lively motion", "intense, dynamic motion"),
    "stability": ("steady footage", "very steady footage", "perfectly stable, locked-off footage"),
    "coherence": (
        "consistent subjects",
        "strongly consistent subjects and scene",
        "subjects and scene that stay exactly the same throughout",
    ),
}


@dataclass(frozen=True, slots=True)
class ShotPlan:
    """What Generate sends for one shot to one model, and how each control got there (`routes`, keyed
    by control: camera, tunes, loop, interpolate, duration, seed, negative_prompt, start_frame,
    end_frame)."""

    prompt: str
    camera: CameraMove | None
    end_frame: str | None
    negative_prompt: str | None
    seed: int | None
    routes: dict[str, str]


def camera_moves(shot: ShotSettings) -> list[CameraMove]:
    """The shot's camera as moves, strongest first (an axis that is still is left out)."""
    moves = [
        CameraMove(positive if value > 0 else negative, round(abs(value), 3))
        for axis, (negative, positive) in CAMERA_AXES.items()
        if abs(value := getattr(shot, axis)) >= STILL
    ]
    return sorted(moves, key=lambda m: -m.strength)


def _size(strength: float) -> int:
    return 0 if strength < 0.34 else 1 if strength < 0.67 else 2


def move_words(moves: list[CameraMove]) -> str:
    """Moves in plain words, in the axes' order: "slow pan right, slight zoom out"."""
    order = [move for pair in CAMERA_AXES.values() for move in pair]
    ordered = sorted(moves, key=lambda m: order.index(m.move))
    sizes = ("slight", "slow", "strong")
    return ", ".join(f"{sizes[_size(m.strength)]} {m.move.replace('_', ' ')}" for m in ordered)


def tune_words(shot: ShotSettings) -> str:
    """The tunes in plain words ("lively motion, very steady footage"); empty when all are 0."""
    return ", ".join(
        words[_size(value)] for name, words in TUNE_WORDS.items() if (value := getattr(shot, name)) >= STILL
    )


def plan_shot(shot: ShotSettings, caps: VideoCapabilities) -> ShotPlan:
    routes: dict[str, str] = {
        "duration": NATIVE if caps.durations else UNUSED,
        "seed": NATIVE if caps.seed else UNUSED,
        "negative_prompt": NATIVE if caps.negative_prompt else UNUSED,
        "start_frame": NATIVE if caps.image_to_video else UNUSED,
        "end_frame": NATIVE if caps.end_frame else UNUSED,
        "tunes": VIA_PROMPT,
        "interpolate": AT_EXPORT,
    }
    moves = camera_moves(shot)
    native = next((m for m in moves if m.move in caps.camera_moves), None)
    worded = [m for m in moves if m is not native]
    if not caps.camera_moves:
        routes["camera"] = VIA_PROMPT
    else:
        routes["camera"] = NATIVE_AND_PROMPT if native is not None and worded else NATIVE
        if native is None and worded:
            routes["camera"] = VIA_PROMPT  # none of the shot's moves is one the model has
    start = shot.start_frame if caps.image_to_video else None
    end = shot.end_frame if caps.end_frame else None
    loop_native = caps.end_frame and start is not None and end is None
    routes["loop"] = NATIVE if loop_native else VIA_PROMPT
    if shot.loop and loop_native:
        end = start

    extras = []
    if worded:
        extras.append(f"Camera: {move_words(worded)}")
    if tunes := tune_words(shot):
        extras.append(f"Style: {tunes}")
    if shot.loop and not loop_native:
        extras.append(LOOP_WORDS[0].upper() + LOOP_WORDS[1:])
    return ShotPlan(
        prompt=_with(shot.prompt.strip(), extras),
        camera=native,
        end_frame=end,
        negative_prompt=(shot.negative_prompt.strip() or None) if caps.negative_prompt else None,
        seed=shot.seed if caps.seed and shot.seed >= 0 else None,
        routes=routes,
    )


def _with(prompt: str, extras: list[str]) -> str:
    """The user's prompt as written, then each extra as a sentence of its own."""
    if not extras:
        return prompt
    lead = prompt.rstrip(" .") + ". " if prompt else ""
    return lead + ". ".join(extras) + "."
