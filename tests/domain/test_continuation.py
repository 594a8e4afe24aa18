"""Cutting what a continuing model repeats of the partial answer."""

from __future__ import annotations

import pytest

from mmstudio.domain.continuation import OverlapTrimmer, continuation_request, repeated_prefix
from mmstudio.providers.base import ChatRequest, Message

PARTIAL = "The three primary colours of light are red, green"


@pytest.mark.parametrize(
    ("continuation", "shown"),
    [
        (" and blue.", " and blue."),  # a clean continuation is kept as it is
        ("red, green and blue.", " and blue."),  # restated the last words
        (PARTIAL + " and blue.", " and blue."),  # restarted the whole answer
        ("  " + PARTIAL + " and blue.", " and blue."),  # ... after some whitespace
        ("n and blue.", "n and blue."),  # a one-letter coincidence is not a repetition
    ],
)
def test_repetition_is_cut(continuation: str, shown: str) -> None:
    trimmer = OverlapTrimmer(PARTIAL)
    out = "".join(trimmer.feed(piece) for piece in _pieces(continuation)) + trimmer.finish()
    assert out == shown


def test_the_decision_waits_for_enough_text_then_streams_through() -> None:
    trimmer = OverlapTrimmer(PARTIAL)
    assert trimmer.feed("red, ") == ""  # held back: might be a repetition
    long_rest = "green and blue. " + "More words follow here. " * 10
    assert trimmer.feed(long_rest) == " and blue. " + "More words follow here. " * 10
    assert trimmer.feed("tail") == "tail"  # decided: no more holding back
    assert trimmer.finish() == ""


def test_nothing_to_continue_means_nothing_is_held() -> None:
    trimmer = OverlapTrimmer("")
    assert trimmer.feed("Hello") == "Hello"
    assert repeated_prefix("", "Hello") == 0


def test_the_continuation_request_carries_the_partial_answer() -> None:
    request = ChatRequest(model="m", messages=(Message.text("user", "colours?"),), temperature=0.2)
    follow = continuation_request(request, PARTIAL)
    assert [m.role for m in follow.messages] == ["user", "assistant", "user"]
    assert follow.messages[1].text_content == PARTIAL and follow.temperature == 0.2


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]
