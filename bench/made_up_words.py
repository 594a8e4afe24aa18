"""Made-up words for benchmark data: a fixed vocabulary, drawn with Zipf's law (word n is 1/n as common
as the first), the same on every run (seeded), so searches match as many rows each time."""

from __future__ import annotations

import itertools
import random

SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ner",
    "to",
    "sa",
    "vi",
    "ru",
    "den",
    "pa",
    "el",
    "or",
    "qu",
    "tin",
    "ba",
    "ze",
)


def vocabulary(size: int) -> tuple[list[str], list[float]]:
    """`size` words in a fixed random order, and the cumulative Zipf weights to draw them with."""
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered, list(itertools.accumulate(1 / (n + 1) for n in range(size)))
