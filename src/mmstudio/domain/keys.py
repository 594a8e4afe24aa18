"""Gateway keys: off by default; required on /v1, /api and /metrics once any key exists.

Keys come from two places: `MMSTUDIO_API_KEYS` (admin keys the operator manages outside the
studio) and keys created through the admin API, of which only a SHA-256 hash is stored. The plain
key is shown once, when it is created, and is never stored, logged or echoed in an error.

Several processes may share one database, so each caches what it has seen for `cache_ttl`
seconds: a positive lookup and the `required` flag. Changes made in this process take effect at
once; another process sees a revocation, or auth being switched on, within `cache_ttl`. A key
this process has never seen always goes to the database, so a new key works everywhere at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mmstudio.config import RateLimit
from mmstudio.errors import InvalidRequest, NotFound, Unauthorized

log = logging.getLogger(__name__)

KEY_PREFIX = "mms-"
PREFIX_LENGTH = 12  # "mms-" and 8 random characters: enough to recognise a key in a list
NAME_MAX = 100

MISSING_KEY = (
    "A gateway key is required: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>' "
    "(create keys under /api/admin/keys or set MMSTUDIO_API_KEYS)"
)
UNKNOWN_KEY = "Unknown or revoked gateway key"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a gateway key identifies."""

    key_id: str
    name: str
    admin: bool
    limit: RateLimit | None = None
    tiers: tuple[str, ...] | None = None  # scoped to these story tiers only (None: not scoped)


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A stored gateway key as the studio shows it: never the key itself nor its hash."""

    id: str
    name: str
    prefix: str
    admin: bool
    rpm: int | None
    tpm: int | None
    created_at: datetime
    revoked_at: datetime | None = None
    tiers: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def principal(self) -> Principal:
        limit = RateLimit(rpm=self.rpm, tpm=self.tpm) if self.rpm or self.tpm else None
        return Principal(key_id=self.id, name=self.name, admin=self.admin, limit=limit, tiers=self.tiers)


class KeyStore(Protocol):
    """Where stored keys live (storage.keys_repo.KeyRepository)."""

    async def add(
        self,
        *,
        name: str,
        key_hash: str,
        prefix: str,
        admin: bool,
        rpm: int | None,
        tpm: int | None,
        tiers: tuple[str, ...] | None = None,
    ) -> GatewayKey: ...

    async def get_by_hash(self, key_hash: str) -> GatewayKey | None: ...

    async def list_all(self) -> list[GatewayKey]: ...

    async def revoke(self, key_id: str) -> GatewayKey | None: ...

    async def count_active(self) -> int: ...


def hash_key(raw: str) -> str:
    """The stored form of a key: SHA-256, hex. Keys are 256 random bits, so no salt or KDF is needed."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class GatewayKeys:
    """Authenticates callers and manages stored keys; see the module docstring for caching."""

    def __init__(
        self,
        store: KeyStore,
        env_keys: tuple[str, ...] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_ttl: float = 5.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = cache_ttl
        # Only hashes are kept: the plain environment keys never live in this object.
        self._env: list[tuple[str, Principal]] = []
        for n, raw in enumerate(dict.fromkeys(k for k in env_keys if k), start=1):
            digest = hash_key(raw)
            principal = Principal(key_id=f"env-{digest[:12]}", name=f"MMSTUDIO_API_KEYS #{n}", admin=True)
            self._env.append((digest, principal))
        self._stored_active = False
        self._checked_at: float | None = None  # when `_stored_active` was last read from the store
        self._cache: dict[str, tuple[Principal, float]] = {}  # key hash → (principal, expires at)

    @property
    def required(self) -> bool:
        """Whether callers must present a key (environment keys, or any active stored key)."""
        return bool(self._env) or self._stored_active

    async def load(self) -> None:
        """Read from the store whether any active key exists."""
        self._checked_at = self._clock()
        self._stored_active = await self._store.count_active() > 0

    async def _refresh_if_stale(self) -> None:
        if self._env:
            return
        if self._checked_at is not None and self._clock() - self._checked_at < self._ttl:
            return
        # Marked fresh before the query so concurrent requests use the last value meanwhile.
        self._checked_at = self._clock()
        self._stored_active = await self._store.count_active() > 0

    async def authenticate(self, raw: str | None) -> Principal | None:
        """The caller's principal; None when keys are not required. Raises Unauthorized."""
        await self._refresh_if_stale()
        if not self.required:
            return None
        if not raw:
            raise Unauthorized(MISSING_KEY)
        digest = hash_key(raw)
        found: Principal | None = None
        for env_digest, principal in self._env:  # every comparison runs: no early exit to time
            if hmac.compare_digest(digest, env_digest):
                found = principal
        if found is not None:
            return found
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self._store.get_by_hash(digest)
        if key is None or not key.active:
            self._cache.pop(digest, None)
            raise Unauthorized(UNKNOWN_KEY)
        principal = key.principal()
        self._cache[digest] = (principal, now + self._ttl)
        return principal

    async def create(
        self,
        name: str,
        *,
        admin: bool = False,
        rpm: int | None = None,
        tpm: int | None = None,
        tiers: tuple[str, ...] | None = None,
    ) -> tuple[GatewayKey, str]:
        """Store a new key; returns it with the plain key, which is shown once and never stored.

        While no key exists (auth is off), the first key is always an admin key so whoever creates
        it cannot lock themselves out of the admin routes.
        """
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise InvalidRequest(f"name must be 1 to {NAME_MAX} characters", field="name")
        for field, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise InvalidRequest(f"{field} must be at least 1 (or left out for no limit)", field=field)
        if tiers is not None and (admin or not tiers):
            raise InvalidRequest(
                "a key scoped to story tiers names at least one tier and is not an admin key", field="tiers"
            )
        if not self._env and await self._store.count_active() == 0:
            if tiers is not None:
                raise InvalidRequest(
                    "the first key is the admin key: create it first, then keys scoped to tiers",
                    field="tiers",
                )
            admin = True
        raw = new_key()
        key = await self._store.add(
            name=name,
            key_hash=hash_key(raw),
            prefix=raw[:PREFIX_LENGTH],
            admin=admin,
            rpm=rpm,
            tpm=tpm,
            tiers=tiers,
        )
        self._stored_active = True
        self._checked_at = self._clock()
        log.info("gateway key created: id=%s name=%r admin=%s", key.id, key.name, key.admin)
        return key, raw

    async def list(self) -> list[GatewayKey]:
        return await self._store.list_all()

    async def revoke(self, key_id: str) -> GatewayKey:
        """Revoke a stored key; it stops working in this process at once. NotFound if unknown."""
        key = await self._store.revoke(key_id)
        if key is None:
            raise NotFound(f"No gateway key with id {key_id!r}")
        self._cache = {h: entry for h, entry in self._cache.items() if entry[0].key_id != key_id}
        await self.load()
        log.info("gateway key revoked: id=%s name=%r", key.id, key.name)
        return key
