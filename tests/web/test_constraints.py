"""The request rules that check a value and state it in the OpenAPI schema: what the schema says is
what the check does, read as JSON Schema reads patterns."""

from __future__ import annotations

import sys
from typing import Annotated

import pytest
from pydantic import ValidationError

from mmstudio.domain.patterns import NOT_BLANK, SPACE
from mmstudio.web.constraints import (
    RequestModel,
    between,
    compile_pattern,
    counted,
    one_of,
    text,
)


class Body(RequestModel):
    prompt: Annotated[str, text("the prompt is empty", max_length=10)]
    n: Annotated[int, between(1, 4, "n")] = 1
    kind: Annotated[str, one_of(("a", "b"), "kind")] = "a"
    tags: Annotated[list[str], counted(0, 2, "at most 2 tags; got {count}", unique="twice: {repeated}")] = []
    flag: bool = False
    ratio: float = 0.5


def refused(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate(data)
    return str(caught.value)


def test_space_is_exactly_what_strip_removes() -> None:
    spaces = compile_pattern(f"[{SPACE}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert (spaces.fullmatch(char) is not None) == char.isspace(), hex(code)


def test_the_schema_carries_each_rule_and_the_check_keeps_it() -> None:
    schema = Body.model_json_schema()["properties"]
    assert schema["prompt"] == {"maxLength": 10, "pattern": NOT_BLANK, "title": "Prompt", "type": "string"}
    assert schema["n"]["minimum"] == 1 and schema["n"]["maximum"] == 4
    assert schema["kind"]["enum"] == ["a", "b"]
    assert schema["tags"]["maxItems"] == 2 and schema["tags"]["uniqueItems"] is True
    assert "the prompt is empty" in refused({"prompt": " \u3000\x1c"})  # spaces of every kind
    assert "the prompt is empty" not in refused({"prompt": "\ufeff", "n": 0})  # not a space to strip
    assert "is 11 characters; at most 10 are allowed" in refused({"prompt": "x" * 11})
    assert "n must be between 1 and 4, got 5" in refused({"prompt": "x", "n": 5})
    assert "unknown kind 'c'; allowed: a, b" in refused({"prompt": "x", "kind": "c"})
    assert "at most 2 tags; got 3" in refused({"prompt": "x", "tags": ["a", "b", "c"]})
    assert "twice: a" in refused({"prompt": "x", "tags": ["a", "a"]})


def test_values_of_the_wrong_json_type_are_refused_but_a_whole_number_is_an_integer() -> None:
    assert Body.model_validate({"prompt": "x", "n": 3.0}).n == 3
    assert Body.model_validate({"prompt": "x", "ratio": 1}).ratio == 1.0
    for wrong in ({"n": "3"}, {"n": 2.5}, {"flag": 0}, {"flag": "true"}, {"ratio": "0.5"}, {"prompt": 5}):
        refused({"prompt": "x", **wrong})


def test_patterns_are_read_as_json_schema_reads_them() -> None:
    assert compile_pattern("^abc$").search("abc\n") is None  # Python's `$` alone would take it
    assert compile_pattern("^abc$").search("abc") is not None
    assert compile_pattern(r"^\d+$").search("\u0661\u0662") is None  # ASCII digits only
