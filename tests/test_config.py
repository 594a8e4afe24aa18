"""The YAML config file: the shipped example loads; every mistake names file, field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmstudio.config import load_config
from mmstudio.errors import ConfigError

EXAMPLE = Path(__file__).parents[1] / "examples" / "mmstudio.yaml"


def test_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.default_model == "ollama/llama3.2:latest"
    assert config.aliases["smart"] == "openai/gpt-4o"
    assert config.endpoints[0].name == "gpu-box" and config.endpoints[0].api_key_env == "GPU_BOX_KEY"
    assert config.models[0].capabilities is not None and config.models[0].capabilities.tools is True
    assert config.timeouts.local == 30 and config.timeouts.cloud == 60


def _load(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message
    return info.value


def test_unknown_field_lists_allowed_fields(tmp_path: Path) -> None:
    error = _load(tmp_path, "timeouts:\n  locl: 5\n")
    assert "timeouts.locl" in error.message
    assert "allowed here: cloud, local" in error.message


def test_wrong_enum_names_allowed_values(tmp_path: Path) -> None:
    error = _load(tmp_path, "endpoints:\n  - name: box\n    platform: vllm\n    base_url: http://x\n")
    assert "endpoints.0.platform" in error.message
    assert "'ollama'" in error.message and "'openai_compat'" in error.message


def test_bad_model_id_and_bad_number(tmp_path: Path) -> None:
    error = _load(tmp_path, "models:\n  - id: gpt4\n    timeout: -1\n")
    assert "models.0.id" in error.message and "provider/model" in error.message
    assert "models.0.timeout" in error.message and "greater than 0" in error.message


def test_alias_target_must_be_an_id(tmp_path: Path) -> None:
    assert "alias 'x'" in _load(tmp_path, "aliases:\n  x: nothing\n").message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    assert "line 2, column 6" in _load(tmp_path, "aliases:\n  x: : y\n").message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in _load(tmp_path, "- a\n- b\n").message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(path).detect_local is True


def test_story_tiers_default_to_kids_on_and_nsfw_off_and_load_from_yaml(tmp_path: Path) -> None:
    default = load_config(EXAMPLE).stories.tiers
    assert default["kids"].enabled and not default["nsfw"].enabled
    assert default["kids"].image_model == "openai/gpt-image-1" and default["kids"].moderation == "auto"
    path = tmp_path / "tiers.yaml"
    path.write_text(
        "stories:\n  tiers:\n    teens:\n      name: Teens\n      image_models: [openai/gpt-image-1]\n"
        "      video: false\n      max_scenes: 12\n      instructions: No gore.\n"
    )
    teens = load_config(path).stories.tiers["teens"]
    assert (teens.name, teens.image_models, teens.video, teens.max_scenes) == (
        "Teens",
        ("openai/gpt-image-1",),
        False,
        12,
    )


@pytest.mark.parametrize("name", ["api", "stories", "Kids", "a b"])
def test_a_tier_named_like_a_studio_path_or_not_a_slug_is_refused(tmp_path: Path, name: str) -> None:
    error = _load(tmp_path, f"stories:\n  tiers:\n    '{name}':\n      name: X\n")
    assert f"tier {name!r}" in error.message and "lowercase slug" in error.message, error.message
    assert "stories" in error.message  # the reserved names are listed
