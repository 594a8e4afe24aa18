"""The one Settings object, built from the environment at start-up and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from mmstudio.config import StudioConfig, load_config
from mmstudio.errors import ConfigError

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
    "xai": "https://api.x.ai/v1",
}

# Media-only cloud vendors (no chat models): provider id -> (key variable, base-url variable, default).
MEDIA_CLOUD_ENV = {"runway": ("RUNWAYML_API_SECRET", "RUNWAY_BASE_URL", "https://api.dev.runwayml.com/v1")}

# Cloud provider id -> (key variable, base-url variable).
CLOUD_ENV = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GEMINI_BASE_URL"),
    "xai": ("XAI_API_KEY", "XAI_BASE_URL"),
}


@dataclass(frozen=True)
class CloudProviderSettings:
    provider: str
    key_env: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mmstudio")
    database_url: str | None = None
    redis_url: str | None = None
    config_path: Path | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    ollama_url: str = "http://127.0.0.1:11434"
    lmstudio_url: str = "http://127.0.0.1:1234/v1"
    comfyui_url: str = "http://127.0.0.1:8188"
    a1111_url: str = "http://127.0.0.1:7860"
    cloud: Mapping[str, CloudProviderSettings] = field(default_factory=dict)
    media_cloud: Mapping[str, CloudProviderSettings] = field(default_factory=dict)
    config: StudioConfig = field(default_factory=StudioConfig)
    host: str = "127.0.0.1"
    port: int = 8765

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every MMSTUDIO_* and provider variable; `overrides` (CLI flags) win."""
        env = os.environ if environ is None else environ
        config_path_raw = overrides.pop("config_path", None) or env.get("MMSTUDIO_CONFIG")
        config_path = Path(str(config_path_raw)) if config_path_raw else None
        config = load_config(config_path) if config_path else StudioConfig()
        cloud = {
            provider: CloudProviderSettings(
                provider=provider,
                key_env=key_env,
                base_url=(env.get(url_env) or DEFAULT_BASE_URLS[provider]).rstrip("/"),
                api_key=env.get(key_env)
                or (env.get("GOOGLE_API_KEY") if provider == "gemini" else None)
                or None,
            )
            for provider, (key_env, url_env) in CLOUD_ENV.items()
        }
        media_cloud = {
            provider: CloudProviderSettings(
                provider=provider,
                key_env=key_env,
                base_url=(env.get(url_env) or default).rstrip("/"),
                api_key=env.get(key_env) or None,
            )
            for provider, (key_env, url_env, default) in MEDIA_CLOUD_ENV.items()
        }
        keys = tuple(k.strip() for k in env.get("MMSTUDIO_API_KEYS", "").split(",") if k.strip())
        settings = cls(
            data_dir=Path(env.get("MMSTUDIO_DATA_DIR") or ".mmstudio"),
            database_url=env.get("MMSTUDIO_DATABASE_URL") or None,
            redis_url=env.get("MMSTUDIO_REDIS_URL") or None,
            config_path=config_path,
            api_keys=keys,
            ollama_url=normalize_ollama_host(env.get("OLLAMA_HOST", "")),
            lmstudio_url=normalize_openai_base(env.get("LMSTUDIO_BASE_URL", "") or "http://127.0.0.1:1234"),
            comfyui_url=_plain_url(env.get("COMFYUI_URL", "") or "http://127.0.0.1:8188"),
            a1111_url=_plain_url(env.get("A1111_URL", "") or "http://127.0.0.1:7860"),
            cloud=cloud,
            media_cloud=media_cloud,
            config=config,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in clean:
            clean["data_dir"] = Path(str(clean["data_dir"]))
        return replace(settings, **clean)  # type: ignore[arg-type]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mmstudio.db').resolve()}"

    @property
    def job_engine(self) -> Literal["table", "procrastinate"]:
        """How jobs reach workers (`videos.engine` with `auto` resolved for this database)."""
        engine = self.config.videos.engine
        postgres = not self.resolved_database_url.startswith("sqlite")
        if engine == "auto":
            return "procrastinate" if postgres else "table"
        if engine == "procrastinate" and not postgres:
            raise ConfigError(
                "videos.engine: procrastinate needs PostgreSQL (MMSTUDIO_DATABASE_URL=postgresql://...); "
                "allowed: auto, table, procrastinate (auto is table on SQLite)"
            )
        return engine

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this process knows, for redaction."""
        keys = [c.api_key for c in self.cloud.values() if c.api_key]
        return tuple(keys) + self.api_keys


def normalize_ollama_host(raw: str) -> str:
    """`OLLAMA_HOST` as Ollama reads it: host, host:port or a URL; 0.0.0.0 means this machine."""
    value = raw.strip() or "127.0.0.1:11434"
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    port = parts.port or 11434
    host_part = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host_part}:{port}{parts.path.rstrip('/')}"


def normalize_openai_base(raw: str) -> str:
    """An OpenAI-compatible base URL always ends in its API root (`/v1` unless a path is given)."""
    value = raw.strip().rstrip("/")
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if not parts.path:
        value += "/v1"
    return value


def _plain_url(raw: str) -> str:
    """A local engine's address as typed (host:port or a URL) → a URL without a trailing slash."""
    value = raw.strip().rstrip("/")
    return value if "://" in value else "http://" + value
