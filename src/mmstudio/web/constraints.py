"""Checks on request values that say in their JSON Schema exactly what they check, so the OpenAPI
document (generated from the same pydantic models) is never looser or stricter than the validation.

Each helper returns a `Rule`, used as `Annotated` metadata: `prompt: Annotated[str, text("...")]`.
Pydantic runs the rule's check after the type's own, and the schema gets the rule's keywords
(`pattern`, `maxLength`, `enum`, `minimum`...). Patterns are used with `search`, as JSON Schema's
`pattern` is, and read as it reads them (`compile_pattern`); a value refused gets the studio's message,
not pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from mmstudio.domain.patterns import BASE64_BODY, ID_PATTERN, NOT_BLANK, SPACE
from mmstudio.domain.times import parse_time

# Every pattern is read the way JSON Schema reads it (ECMA-262): `\d` and `\w` over ASCII, and a
# closing `$` only at the very end (Python's `$` also matches before a final newline). Spaces are
# spelled out (`domain.patterns.SPACE`, exactly what `str.strip` removes).
SAYS_SOMETHING = rf"[^{SPACE}\x00-\x1f\x7f-\x9f]"
"""At least one character that is neither a space nor a control character (what is left of a text
once control characters are dropped and it is stripped)."""
HTTP_URL = rf"^https?://[^{SPACE}]"
ID = ID_PATTERN
"""What an id the studio made (a UUID) looks like."""
BASE64 = f"^{BASE64_BODY}$"
"""Standard base64 with its padding: what `base64.b64decode(..., validate=True)` reads."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` as JSON Schema means it (see above), for `search`."""
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, re.ASCII)


# The error types of the rules here whose messages name their field themselves ("n must be between...",
# "unknown framework ..."): shown as they are, where pydantic's own messages get the field's path first.
SELF_NAMED = frozenset(
    {"pattern", "enum", "range", "count", "unique", "blank", "date_time", "base_url", "part"}
)


def describe(error: Mapping[str, Any], where: str) -> str:
    """One validation error in words: `where` (the field's path) and the message, or the message alone
    when it names its field itself."""
    message = str(error.get("msg", "invalid"))
    return message if error.get("type") in SELF_NAMED else f"{where}: {message}"


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
    compiled = compile_pattern(pattern) if pattern is not None else None

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


def _date_time(value: str) -> str:
    if parse_time(value, date_only=False) is None:
        raise PydanticCustomError(
            "date_time",
            "'{value}' is not an RFC 3339 date-time (like 2026-01-31T12:00:00Z)",
            {"value": value[:80]},
        )
    return value


DATE_TIME = Rule(_date_time, {"format": "date-time"})
"""An RFC 3339 date-time (JSON Schema's `date-time`), as `domain.times.parse_time` reads it."""


def _whole_numbers(value: Any) -> Any:
    """`value` with every float that is a whole number (JSON's `1.0`) as an int, throughout; the value
    itself (no copy) when it holds none, which is nearly always."""
    if type(value) is float:
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if type(value) is dict:
        changed = {k: w for k, v in value.items() if (w := _whole_numbers(v)) is not v}
        return {**value, **changed} if changed else value
    if type(value) is list:
        items = [_whole_numbers(v) for v in value]
        return items if any(w is not v for w, v in zip(items, value, strict=True)) else value
    return value


class RequestModel(BaseModel):
    """A request body: strict, so a value of the wrong JSON type is refused rather than converted (no
    `"1"` for a number, no `0` for a boolean), except that a whole number written `1.0` is an integer,
    as JSON Schema says."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _json_numbers(cls, data: Any) -> Any:
        return _whole_numbers(data)
