"""Regular expressions for text that arrives from outside (an API, a form, a file), written so that
JSON Schema (ECMA-262) and Python read them alike: spaces spelled out, ASCII classes, and a closing `$`
meant as the very end. The API's schemas carry them and the checks use them (`web/constraints`)."""

from __future__ import annotations

import re
from typing import Final

SPACE: Final = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Exactly the characters Python's `str.strip` removes (`\\s` differs between the two readers)."""
NOT_BLANK: Final = rf"[^{SPACE}]"
"""At least one character that is not a space: a string `strip` leaves something of."""
BASE64_BODY: Final = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
"""Standard base64 with its padding: what `base64.b64decode(..., validate=True)` reads."""
ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,36}$"
"""Letters, digits and `._:-`, 1 to 36 of them: every id the studio makes (a UUID) and nothing that
could not be one (the id columns hold 36 characters)."""

_ID = re.compile(ID_PATTERN[:-1] + r"\Z")


def is_id(value: str) -> bool:
    return _ID.match(value) is not None
