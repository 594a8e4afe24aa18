"""Sizes and aspect ratios mapped to what each image model can do."""

from __future__ import annotations

import pytest

from mmstudio.domain.media.sizes import map_shape, parse_shape
from mmstudio.errors import InvalidRequest
from mmstudio.providers.media.base import ImageCapabilities

OPENAI = ImageCapabilities(sizes=("1024x1024", "1536x1024", "1024x1536"))
RATIOS = ImageCapabilities(aspect_ratios=("1:1", "16:9", "9:16", "4:3", "3:4"))
ENGINE = ImageCapabilities()


def test_an_offered_size_is_sent_as_it_is() -> None:
    mapped = map_shape(parse_shape("1536x1024"), OPENAI)
    assert (mapped.size, mapped.aspect_ratio, mapped.note) == ("1536x1024", None, None)


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        ("1000x1000", "1024x1024"),
        ("1920x1080", "1536x1024"),
        ("720x1280", "1024x1536"),
        ("16:9", "1536x1024"),
    ],
)
def test_a_size_the_model_cannot_do_becomes_its_nearest_and_says_so(asked: str, used: str) -> None:
    mapped = map_shape(parse_shape(asked), OPENAI)
    assert mapped.size == used
    assert mapped.note is not None and asked in mapped.note and used in mapped.note


@pytest.mark.parametrize(
    ("asked", "used"), [("1920x1080", "16:9"), ("1024x1024", "1:1"), ("768x1024", "3:4")]
)
def test_ratio_models_get_the_nearest_ratio_never_a_raw_size(asked: str, used: str) -> None:
    mapped = map_shape(parse_shape(asked), RATIOS)
    assert (mapped.size, mapped.aspect_ratio) == (None, used)


def test_an_exact_ratio_to_a_ratio_model_has_no_note() -> None:
    assert map_shape(parse_shape("9:16"), RATIOS).note is None


def test_engines_that_take_any_size_get_multiples_of_eight() -> None:
    assert map_shape(parse_shape("1000x601"), ENGINE).size == "1000x600"
    assert map_shape(parse_shape("16:9"), ENGINE).size == "1024x576"
    assert map_shape(parse_shape("4000x4000"), ENGINE).size == "2048x2048"


def test_auto_and_nothing_leave_the_model_its_default() -> None:
    for raw in (None, "", "auto"):
        assert map_shape(parse_shape(raw), OPENAI).used is None


@pytest.mark.parametrize("raw", ["big", "10x10", "1024", "1:9", "0:1", "99999x2"])
def test_a_size_that_is_neither_size_nor_ratio_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_shape(raw)
    assert caught.value.field == "size"
