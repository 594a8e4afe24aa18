"""Settings come from the environment passed in, never read at import time."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmstudio.errors import ConfigError
from mmstudio.settings import Settings, normalize_ollama_host, normalize_openai_base


def test_defaults_are_embedded() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path(".mmstudio")
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.ollama_url == "http://127.0.0.1:11434"
    assert settings.lmstudio_url == "http://127.0.0.1:1234/v1"
    assert not any(c.enabled for c in settings.cloud.values())
    assert settings.cloud["openai"].base_url == "https://api.openai.com/v1"


def test_environment_is_read() -> None:
    env = {
        "MMSTUDIO_DATA_DIR": "/tmp/x",
        "MMSTUDIO_DATABASE_URL": "postgresql://u@h/db",
        "OPENAI_API_KEY": "sk-1",
        "XAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "OLLAMA_HOST": "0.0.0.0:11500",
        "LMSTUDIO_BASE_URL": "localhost:4321",
        "MMSTUDIO_API_KEYS": "a, b,",
        "GOOGLE_API_KEY": "g-1",
    }
    settings = Settings.from_env(env, port=9999)
    assert settings.data_dir == Path("/tmp/x")
    assert settings.resolved_database_url == "postgresql://u@h/db"
    assert settings.cloud["openai"].enabled and not settings.cloud["anthropic"].enabled
    assert settings.cloud["gemini"].api_key == "g-1"  # GOOGLE_API_KEY is accepted too
    assert settings.cloud["xai"].base_url == "http://127.0.0.1:9/v1"
    assert settings.ollama_url == "http://127.0.0.1:11500"
    assert settings.lmstudio_url == "http://localhost:4321/v1"
    assert settings.api_keys == ("a", "b")
    assert settings.port == 9999
    assert "sk-1" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        ("myhost", "http://myhost:11434"),
        ("https://ollama.example:443", "https://ollama.example:443"),
        ("http://[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_host_forms(raw: str, expected: str) -> None:
    assert normalize_ollama_host(raw) == expected


def test_openai_base_keeps_a_given_path() -> None:
    assert normalize_openai_base("http://h:8000/api/v1/") == "http://h:8000/api/v1"


def test_config_file_errors_surface(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("nonsense: 1\n")
    with pytest.raises(ConfigError, match="nonsense"):
        Settings.from_env({"MMSTUDIO_CONFIG": str(bad)})
