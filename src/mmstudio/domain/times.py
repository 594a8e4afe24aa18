"""Times that arrive as text (an API parameter, an imported file), read as RFC 3339 says: JSON Schema's
`date-time`, and `date` where a day is enough."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2}))?",
    re.ASCII,
)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def parse_time(text: str, *, date_only: bool = True) -> datetime | None:
    """`text` as an aware UTC time, or None when it is not an RFC 3339 date-time (or, with
    `date_only`, a date: its midnight UTC). Lowercase `t` and `z` and a leap second are read as RFC 3339
    allows; a time past either end of the calendar is clamped to it."""
    if _RFC3339.fullmatch(text) is None or (not date_only and len(text) == 10):
        return None
    text = text.upper()
    if text[17:19] == "60":  # a leap second: Python's datetime has none
        text = text[:17] + "59" + text[19:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:  # a month 13, a February 30th
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        return EARLIEST if parsed.year == 1 else LATEST
