"""What the text model is asked for a scene and how its answer is read: the tier's rules, the cast in
memory mode, the story so far; a scene parsed from clean JSON, a fenced block or chatter around it, a
trailing comma; what is wrong with an answer said precisely (it becomes the repair request); and the
narrative read while it is still being written."""

from __future__ import annotations

from datetime import UTC, datetime

from mmstudio.domain.story.types import Character, Scene
from mmstudio.domain.story.writing import (
    SceneText,
    Unreadable,
    messages,
    parse_scene,
    partial_scene,
    repair_messages,
)

NOW = datetime(2026, 12, 7, tzinfo=UTC)
GOOD = (
    '{"title": "The Lantern", "narrative": "Mira found a lantern.", "image_prompt": "a girl holding a '
    'glowing lantern in a dark forest", "choices": ["Light it", "Hide it", "Call for help"]}'
)


def _scene(number: int, title: str, narrative: str) -> Scene:
    return Scene(
        id=f"sc_{number}",
        story_id="st_1",
        tier="kids",
        parent_id=f"sc_{number - 1}" if number > 1 else None,
        choice=None,
        depth=number - 1,
        state="written",
        created_at=NOW,
        updated_at=NOW,
        title=title,
        narrative=narrative,
    )


def test_a_clean_fenced_or_chatty_answer_is_a_scene() -> None:
    for answer in (
        GOOD,
        f"```json\n{GOOD}\n```",
        f"Here is the next scene:\n{GOOD}\nI hope you like it!",
        GOOD.replace('"Call for help"]', '"Call for help",]'),  # a trailing comma
    ):
        scene = parse_scene(answer)
        assert isinstance(scene, SceneText), (answer, scene)
        assert scene.title == "The Lantern" and scene.choices == ["Light it", "Hide it", "Call for help"]


def test_what_is_wrong_with_an_answer_is_said_precisely() -> None:
    assert parse_scene("Once upon a time there was a fox.") == Unreadable("it is not a JSON object")
    broken = parse_scene('{"title": "A", "narrative": "B" "image_prompt": "C"}')
    assert isinstance(broken, Unreadable) and broken.problem.startswith("it is not valid JSON (Expecting")
    one_choice = parse_scene(GOOD.replace('"Light it", "Hide it", "Call for help"', '"Light it"'))
    assert isinstance(one_choice, Unreadable) and one_choice.problem.startswith("choices: List should have")
    no_prompt = parse_scene(GOOD.replace('"image_prompt"', '"picture"'))
    assert no_prompt == Unreadable("image_prompt: Field required")
    five = parse_scene(GOOD.replace('"Call for help"', '"a", "b", "c"'))
    assert isinstance(five, Unreadable) and "at most 4" in five.problem
    blank = parse_scene(GOOD.replace('"Hide it"', '"  "'))
    assert isinstance(blank, Unreadable) and "every choice must be 1 to 300" in blank.problem


def test_the_narrative_is_read_while_it_is_written() -> None:
    assert partial_scene("") == {} and partial_scene("Sure! ") == {}
    assert partial_scene('```json\n{"title": "The Lan') == {"title": "The Lan"}
    assert partial_scene('{"title": "The Lantern", "narrative": "Mira fo') == {
        "title": "The Lantern",
        "narrative": "Mira fo",
    }
    assert partial_scene(GOOD)["choices"] == ["Light it", "Hide it", "Call for help"]


def test_the_request_carries_the_rules_the_cast_the_story_so_far_and_the_choice() -> None:
    path = [_scene(n, f"Title {n}", f"Narrative {n}.") for n in range(1, 6)]
    fox = Character("ch_1", "kids", "Pip", "a small red fox with one white ear", (), NOW, NOW)
    system, user = messages(
        instructions="Keep it gentle.",
        premise="A fox looks for a home",
        path=path,
        choice="Follow the river",
        characters=[fox],
        max_scenes=30,
    )
    assert system.role == "system" and system.text_content.startswith("Keep it gentle.")
    assert "- Pip: a small red fox with one white ear" in system.text_content
    assert '"choices"' in system.text_content and "2 to 4 choices" in system.text_content
    text = user.text_content
    assert text.startswith("The story's premise: A fox looks for a home")
    assert "Scene 1: Title 1\n\n" in text and "Narrative 1." not in text  # older scenes by title only
    assert "Scene 5: Title 5\nNarrative 5." in text and "Narrative 3." in text  # the last three in full
    assert text.endswith("The reader chose: Follow the river\n\nWrite scene 6.")
    first = messages(instructions="", premise="p", path=[], choice=None, max_scenes=30)
    assert "characters" not in first[0].text_content and first[1].text_content.endswith("Write scene 1.")
    last = messages(instructions="", premise="p", path=path, choice="x", max_scenes=6)
    assert "This is the last scene" in last[0].text_content


def test_the_repair_request_quotes_the_answer_and_the_problem() -> None:
    asked = messages(instructions="", premise="p", path=[], choice=None, max_scenes=30)
    repair = repair_messages(asked, "not json", Unreadable("it is not a JSON object"))
    assert repair[:2] == asked and repair[2].role == "assistant" and repair[2].text_content == "not json"
    assert repair[3].text_content.startswith("That answer cannot be used: it is not a JSON object.")
