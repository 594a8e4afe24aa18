"""How each Video Studio control reaches a model (`plan_shot`): the marks the page shows and what
Generate sends come from the same decisions, checked here for models that take a camera move, an end
frame, a seed, a negative prompt, or none of these."""

from __future__ import annotations

from dataclasses import replace

from mmstudio.domain.video.controls import (
    AT_EXPORT,
    NATIVE,
    NATIVE_AND_PROMPT,
    UNUSED,
    VIA_PROMPT,
    camera_moves,
    plan_shot,
)
from mmstudio.domain.video.projects import ShotSettings
from mmstudio.providers.media.video_base import CameraMove, VideoCapabilities

BARE = VideoCapabilities(durations=(4, 8))  # text to video and nothing else (Sora's kind)
ENDS = VideoCapabilities(durations=(4,), image_to_video=True, end_frame=True, negative_prompt=True)
CAMERA = VideoCapabilities(
    image_to_video=True, seed=True, camera_moves=("pan_left", "pan_right", "zoom_in", "zoom_out")
)
SHOT = ShotSettings(prompt="A fox in the snow.")


def test_a_plain_shot_is_sent_as_written() -> None:
    plan = plan_shot(SHOT, BARE)
    assert plan.prompt == "A fox in the snow." and plan.camera is None and plan.end_frame is None
    assert plan.seed is None and plan.negative_prompt is None
    assert plan.routes == {
        "duration": NATIVE,
        "seed": UNUSED,
        "negative_prompt": UNUSED,
        "start_frame": UNUSED,
        "end_frame": UNUSED,
        "tunes": VIA_PROMPT,
        "interpolate": AT_EXPORT,
        "camera": VIA_PROMPT,
        "loop": VIA_PROMPT,
    }


def test_camera_and_tunes_in_words_for_a_model_without_controls() -> None:
    shot = replace(SHOT, pan_x=-0.8, zoom=0.1, roll=0.02, amplitude=0.2, coherence=0.9)
    assert plan_shot(shot, BARE).prompt == (
        "A fox in the snow. Camera: strong pan left, slight zoom in. Style: subtle motion, "
        "subjects and scene that stay exactly the same throughout."
    )  # a roll of 0.02 is no roll at all
    assert plan_shot(replace(shot, prompt=""), BARE).prompt.startswith("Camera: strong pan left")


def test_the_strongest_move_a_model_has_is_its_parameter_and_the_rest_are_words() -> None:
    assert camera_moves(replace(SHOT, pan_x=0.3, tilt=-0.6)) == [
        CameraMove("tilt_down", 0.6),
        CameraMove("pan_right", 0.3),
    ]
    one = plan_shot(replace(SHOT, zoom=-0.5), CAMERA)
    assert one.camera == CameraMove("zoom_out", 0.5) and one.prompt == "A fox in the snow."
    assert one.routes["camera"] == NATIVE
    # tilt is the strongest, but this model has no tilt: pan right is its move, the tilt is words
    mixed = plan_shot(replace(SHOT, pan_x=0.3, tilt=-0.6), CAMERA)
    assert mixed.camera == CameraMove("pan_right", 0.3)
    assert mixed.prompt == "A fox in the snow. Camera: slow tilt down."
    assert mixed.routes["camera"] == NATIVE_AND_PROMPT
    only_tilt = plan_shot(replace(SHOT, tilt=0.5), CAMERA)
    assert only_tilt.camera is None and only_tilt.routes["camera"] == VIA_PROMPT
    assert plan_shot(SHOT, CAMERA).routes["camera"] == NATIVE  # still: nothing to say, the model could


def test_a_loop_is_the_start_frame_as_the_end_frame_where_the_model_takes_one() -> None:
    looped = replace(SHOT, loop=True, start_frame="img_start")
    native = plan_shot(looped, ENDS)
    assert native.end_frame == "img_start" and native.prompt == "A fox in the snow."
    assert native.routes["loop"] == NATIVE
    words = "A fox in the snow. A seamless loop: the last frame matches the first."
    no_start = plan_shot(replace(looped, start_frame=None), ENDS)  # nothing to end on: asked in words
    assert no_start.end_frame is None and no_start.prompt == words and no_start.routes["loop"] == VIA_PROMPT
    no_ends = plan_shot(looped, CAMERA)
    assert no_ends.end_frame is None and no_ends.prompt == words
    unlooped = plan_shot(replace(looped, loop=False, end_frame="img_end"), ENDS)
    assert unlooped.end_frame == "img_end" and unlooped.routes["loop"] == VIA_PROMPT


def test_seed_and_negative_prompt_only_where_the_model_takes_them() -> None:
    shot = replace(SHOT, seed=7, negative_prompt="  blurry ")
    assert plan_shot(shot, CAMERA).seed == 7 and plan_shot(shot, CAMERA).negative_prompt is None
    assert plan_shot(replace(shot, seed=-1), CAMERA).seed is None  # random: the vendor draws it
    assert plan_shot(shot, ENDS).negative_prompt == "blurry" and plan_shot(shot, ENDS).seed is None
