"""Checks on request values that say in their JSON Schema exactly what they check, so the OpenAPI
document (generated from the same pydantic models) is never looser or stricter than the validation.

Each helper returns a `Rule`, used as `Annotated` metadata: `prompt: Annotated[str, text("...")]`.
Pydantic runs the rule's check after the type's own, and the schema gets the rule's keywords
(`pattern`, `maxLength`, `enum`, `minimum`...). Patterns are Python regular expressions used with
`search`, as JSON Schema's `pattern` is; a value refused gets the studio's message, not pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

NOT_BLANK = r"\S"
"""At least one character that is not a space (Python's `\\S`: exactly what `str.strip` keeps)."""
SAYS_SOMETHING = r"[^\s\x00-\x1f\x7f-\x9f]"
"""At least one character that is neither a space nor a control character (what is left of a text
once control characters are dropped and it is stripped)."""
HTTP_URL = r"^https?://\S"
ID = r"^[A-Za-z0-9._:-]{1,36}$"
"""What an id the studio made (a UUID) or imported looks like; the id columns hold 36 characters."""
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard base64 with its padding: what `base64.b64decode(..., validate=True)` reads."""


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as `Annotated` needs
class Rule:
    """`Annotated` metadata: `check` runs after the type's own validation (it returns the value or
    raises `PydanticCustomError`), and `keywords` join the field's JSON Schema."""

    check: Callable[[Any], Any]
    keywords: Mapping[str, Any] = field(default_factory=dict)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        found.update(self.keywords)
        return found


def matching(pattern: str | None, message: str, *, max_length: int | None = None) -> Rule:
    """A string that `pattern` finds something in (any string with `None`); any other is refused
    with `message`, where `{value}` stands for the start of the value. Over `max_length` characters
    it is refused saying how many it has and how many are allowed."""
    compiled = re.compile(pattern) if pattern is not None else None

    def check(value: str) -> str:
        if max_length is not None and len(value) > max_length:
            raise PydanticCustomError(
                "too_long",
                "is {length} characters; at most {max} are allowed",
                {"length": f"{len(value):,}", "max": f"{max_length:,}"},
            )
        if compiled is not None and compiled.search(value) is None:
            raise PydanticCustomError("pattern", message, {"value": value[:80]})
        return value

    keywords: dict[str, Any] = {"pattern": pattern} if pattern is not None else {}
    if max_length is not None:
        keywords["maxLength"] = max_length
    return Rule(check, keywords)


def text(message: str, *, max_length: int | None = None) -> Rule:
    """A string with something besides spaces in it; a blank one is refused with `message`."""
    return matching(NOT_BLANK, message, max_length=max_length)


def http_url(what: str, *, max_length: int = 8000) -> Rule:
    """An http:// or https:// URL."""
    return matching(
        HTTP_URL, f"{what} must be an http:// or https:// URL, got '{{value}}'", max_length=max_length
    )


def an_id(what: str) -> Rule:
    """An id of a stored thing: letters, digits and `._:-`, 1 to 36 of them."""
    return matching(ID, f"'{{value}}' is not {what} (ids are 1 to 36 letters, digits or ._:-)")


def one_of(values: tuple[str, ...] | list[str], what: str) -> Rule:
    """One of `values`, exactly as written (the schema's `enum`)."""
    allowed = tuple(values)
    message = f"unknown {what} '{{value}}'; allowed: {', '.join(allowed)}"

    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError("enum", message, {"value": value[:80]})
        return value

    return Rule(check, {"enum": list(allowed)})


def between(low: int, high: int, what: str) -> Rule:
    """A whole number from `low` to `high`."""

    def check(value: int) -> int:
        if not low <= value <= high:
            message = f"{what} must be between {low} and {high}, got {{value}}"
            raise PydanticCustomError("range", message, {"value": value})
        return value

    return Rule(check, {"minimum": low, "maximum": high})


def counted(min_items: int, max_items: int, message: str, *, unique: str | None = None) -> Rule:
    """A list of `min_items` to `max_items` items (`message`, with `{count}`, otherwise); with
    `unique`, no item twice (`unique` is the message then, with `{repeated}`)."""

    def check(value: list[Any]) -> list[Any]:
        if not min_items <= len(value) <= max_items:
            raise PydanticCustomError("count", message, {"count": len(value)})
        if unique is not None:
            repeated = sorted({str(v) for i, v in enumerate(value) if v in value[:i]})
            if repeated:
                raise PydanticCustomError("unique", unique, {"repeated": ", ".join(repeated)})
        return value

    keywords: dict[str, Any] = {"minItems": min_items, "maxItems": max_items}
    if unique is not None:
        keywords["uniqueItems"] = True
    return Rule(check, keywords)
