"""Encryption of secrets at rest (endpoint API keys) with a key kept beside the database."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mmstudio.errors import ConfigError


class SecretBox:
    """Fernet encryption. The key comes from MMSTUDIO_SECRET_KEY or `<data_dir>/secret.key` (0600)."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError("MMSTUDIO_SECRET_KEY must be a urlsafe base64 32-byte Fernet key") from exc

    @classmethod
    def from_data_dir(cls, data_dir: Path, env_key: str | None = None) -> SecretBox:
        if env_key:
            return cls(env_key.encode())
        path = data_dir / "secret.key"
        if path.exists():
            return cls(path.read_bytes().strip())
        data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return cls(key)

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise ConfigError(
                "a stored API key cannot be decrypted: the secret key changed "
                "(MMSTUDIO_SECRET_KEY or secret.key)"
            ) from exc
