"""What an id of a stored thing looks like, wherever one arrives from outside (an API, a form, a file)."""

from __future__ import annotations

import re
from typing import Final

ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,36}$"
"""Letters, digits and `._:-`, 1 to 36 of them: every id the studio makes (a UUID) and nothing that
could not be one (the id columns hold 36 characters)."""

_ID = re.compile(ID_PATTERN[:-1] + r"\Z")


def is_id(value: str) -> bool:
    return _ID.match(value) is not None
