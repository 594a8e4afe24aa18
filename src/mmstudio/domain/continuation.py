"""Mid-stream failover: ask the next model to continue a partial answer, and cut what it repeats.

The partial answer goes back as the assistant's turn, followed by a short instruction to go on
from the exact point where it stopped. Models often restate a few words (or the whole answer)
before continuing; `OverlapTrimmer` holds the first characters of the continuation back until it
can tell, and drops the repeated part so the client sees one seamless answer.
"""

from __future__ import annotations

from dataclasses import replace

from mmstudio.providers.base import ChatRequest, Message

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it from exactly where it stopped: do not repeat "
    "anything already written, do not add a preamble, output only the rest of the reply."
)
HOLD_BACK = 160  # characters of the continuation inspected for repetition
MIN_OVERLAP = 12  # a shorter restart is a coincidence, not a repetition
MIN_RESTATED = 4  # a restated tail must be a few characters long and start at a word


def continuation_request(request: ChatRequest, partial: str) -> ChatRequest:
    messages = (
        *request.messages,
        Message.text("assistant", partial),
        Message.text("user", CONTINUE_INSTRUCTION),
    )
    return replace(request, messages=messages)


class OverlapTrimmer:
    """Feed continuation text; get back what should be shown after `partial`."""

    def __init__(self, partial: str) -> None:
        self.partial = partial
        self._held = ""
        self._decided = not partial

    def feed(self, text: str) -> str:
        if self._decided:
            return text
        self._held += text
        if len(self._held) < HOLD_BACK:
            return ""
        return self._decide()

    def finish(self) -> str:
        """The end of the continuation: release whatever is still held back."""
        return "" if self._decided else self._decide()

    def _decide(self) -> str:
        self._decided = True
        held, self._held = self._held, ""
        return held[repeated_prefix(self.partial, held) :]


def repeated_prefix(partial: str, continuation: str) -> int:
    """How many leading characters of `continuation` repeat the end of `partial`.

    Two cases: the model restarted the whole answer (the continuation starts with the beginning
    of `partial`), or it restated the last words (a suffix of `partial` is a prefix of it).
    """
    stripped = continuation.lstrip()
    lead = len(continuation) - len(stripped)
    # Restarted from the top: skip as much of the answer as it repeats.
    common = _common_prefix(partial.lstrip(), stripped)
    if common >= min(MIN_OVERLAP, len(partial.strip())) and common > 0:
        return lead + common
    # Restated the tail: the longest suffix of partial, starting at a word, that starts the continuation.
    longest = 0
    for size in range(min(len(partial), len(stripped)), MIN_RESTATED - 1, -1):
        at_word = size == len(partial) or not partial[-size - 1].isalnum()
        if at_word and stripped.startswith(partial[-size:]):
            longest = size
            break
    if longest:
        return lead + longest
    if partial[-1:].isspace():
        return lead  # the partial already ends with the space the continuation starts with
    # Partial ended mid-word or mid-sentence and the model starts cleanly: keep its own spacing.
    return 0


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
