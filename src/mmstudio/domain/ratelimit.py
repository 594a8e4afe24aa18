"""Rate limits per gateway key, per model and per user: requests and tokens in a 60 s moving window.

Counting uses the `limits` library's moving window, which keeps one timestamp per unit spent. It is
exact under concurrency because checking and recording are one step:

- in process, `MemoryStorage.acquire_entry` reads the window and inserts with no `await` in between,
  so coroutines on one event loop cannot interleave inside it;
- through Redis, `acquire_moving_window.lua` (LINDEX, LPUSH, LTRIM, EXPIRE) runs as one script, and
  Redis runs scripts atomically, so every process sharing the Redis admits exactly the limit.

Redis is an optimisation of a safety net, not a dependency of serving: when it cannot be reached the
limiter admits (fails open) and warns at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, NoReturn
from urllib.parse import unquote, urlsplit

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mmstudio.config import Limits, RateLimit
from mmstudio.errors import ConfigError, RateLimited, redact

log = logging.getLogger(__name__)

SubjectKind = Literal["key", "model", "user"]

KEY_PREFIX = "mmstudio"
WINDOW_SECONDS = 60
# A moving window stores one entry per unit spent. Token limits up to this many tpm are counted one
# entry per token (exactly); above it one entry stands for ceil(tpm / MAX_TOKEN_ENTRIES) tokens, so a
# 5M tpm limit is not 5M Redis list items per subject (nor 5M LPUSHes inside one blocking script).
MAX_TOKEN_ENTRIES = 100_000
WARN_EVERY_SECONDS = 60.0
REDIS_TIMEOUT_SECONDS = 2.0
REDIS_POOL_SIZE = 100
REDIS_POOL_WAIT_SECONDS = 5.0

_STORAGE_ERRORS = (RedisError, OSError)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who or what a limit applies to: a gateway key, a model, or a studio user."""

    kind: SubjectKind
    id: str
    limit: RateLimit


class RateLimiter:
    """Moving-window limits, exact under concurrency; shared through Redis when a URL is given."""

    def __init__(self, limits: Limits, redis_url: str | None = None) -> None:
        self.limits = limits
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._secrets: list[str] = []
        self._where = "memory"
        self._storage: Storage = MemoryStorage() if redis_url is None else self._redis_storage(redis_url)
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._warned_at: float | None = None
        self._closed = False

    def _redis_storage(self, url: str) -> RedisStorage:
        parts = urlsplit(url)
        self._secrets = [unquote(s) for s in (parts.password, parts.username) if s]
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # a port that is not a number
            port = ":?"
        # Shown in logs and errors: no credentials, no query string (which may carry a password).
        self._where = redact(f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}", self._secrets)
        try:
            # No retries: re-sending a timed-out EVALSHA could count one request twice. The asyncio
            # client takes the asyncio Retry class (redis-py 8 warns about, and converts, the sync one).
            self._pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=REDIS_POOL_SIZE,
                timeout=REDIS_POOL_WAIT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(
                f"MMSTUDIO_REDIS_URL {self._where} is not a Redis URL: {redact(str(exc), self._secrets)}"
                " (expected redis://[:password@]host:port/db, rediss://... or unix://...)"
            ) from None
        # The library types its options as scalars; a connection pool is what lets us own and close
        # the connections, so it goes through an Any-typed mapping.
        options: dict[str, Any] = {"connection_pool": self._pool}
        return RedisStorage(url, implementation="redispy", key_prefix=KEY_PREFIX, **options)

    # -- subjects ----------------------------------------------------------------------------

    def for_key(self, key_id: str, override: RateLimit | None = None) -> Subject | None:
        """A key's own rpm/tpm, each falling back to `limits.per_key`; None when nothing applies."""
        return _subject("key", key_id, override, self.limits.per_key)

    def for_model(self, model_id: str) -> Subject | None:
        """`limits.models[model_id]`, each field falling back to `limits.per_model`."""
        return _subject("model", model_id, self.limits.models.get(model_id), self.limits.per_model)

    def for_user(self, user_id: str, limit: RateLimit) -> Subject | None:
        return _subject("user", user_id, limit, RateLimit())

    # -- counting ----------------------------------------------------------------------------

    async def hit(self, subject: Subject) -> None:
        """Count one request, or raise `RateLimited` when the last minute's tokens or requests are spent."""
        limit = subject.limit
        try:
            if limit.tpm is not None:
                item = _token_item(limit.tpm)
                if not await self._strategy.test(item, subject.kind, subject.id):
                    await self._refuse(subject, item, f"{limit.tpm} tokens per minute")
            if limit.rpm is not None:
                item = _request_item(limit.rpm)
                if not await self._strategy.hit(item, subject.kind, subject.id):
                    await self._refuse(subject, item, f"{limit.rpm} requests per minute")
        except _STORAGE_ERRORS as exc:
            self._fail_open(exc)

    async def add_tokens(self, subject: Subject, tokens: int) -> None:
        """Count a finished response's tokens. A response may overshoot: it fills the window to tpm."""
        tpm = subject.limit.tpm
        if tpm is None or tokens <= 0:
            return
        item = _token_item(tpm)
        entries = min(_token_entries(tokens, tpm), item.amount)
        try:
            if await self._strategy.hit(item, subject.kind, subject.id, cost=entries):
                return
            # It does not fit: spend what is left so the next hit is refused until the window moves.
            # (Overshoot beyond tpm is not carried into the following minute.)
            stats = await self._strategy.get_window_stats(item, subject.kind, subject.id)
            if stats.remaining > 0:
                await self._strategy.hit(item, subject.kind, subject.id, cost=stats.remaining)
        except _STORAGE_ERRORS as exc:
            self._fail_open(exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if isinstance(self._storage, MemoryStorage) and self._storage.timer is not None:
            # The storage's expiry sweep is a task of the running loop; do not leave it pending.
            self._storage.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._storage.timer
        if self._pool is not None:
            await self._pool.aclose()

    # -- internals ---------------------------------------------------------------------------

    async def _refuse(self, subject: Subject, item: RateLimitItem, what: str) -> NoReturn:
        stats = await self._strategy.get_window_stats(item, subject.kind, subject.id)
        # The window frees a slot when its oldest entry turns 60 s old (stats.reset_time).
        wait = 1 if stats.remaining > 0 else math.ceil(stats.reset_time - time.time())
        retry_after = min(max(wait, 1), WINDOW_SECONDS)
        raise RateLimited(
            f"Rate limit reached for {subject.kind} {subject.id!r}: {what}. Retry in {retry_after} s.",
            retry_after=retry_after,
        )

    def _fail_open(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY_SECONDS:
            return
        self._warned_at = now
        reason = redact(f"{type(exc).__name__}: {exc}", self._secrets)
        log.warning(
            "Rate limits are not enforced: Redis at %s failed (%s); admitting requests until it answers",
            self._where,
            reason,
        )


def _subject(kind: SubjectKind, id: str, own: RateLimit | None, default: RateLimit) -> Subject | None:
    rpm = own.rpm if own is not None and own.rpm is not None else default.rpm
    tpm = own.tpm if own is not None and own.tpm is not None else default.tpm
    if rpm is None and tpm is None:
        return None
    return Subject(kind, id, RateLimit(rpm=rpm, tpm=tpm))


def _request_item(rpm: int) -> RateLimitItem:
    return RateLimitItemPerMinute(rpm, namespace="rpm")


def _token_unit(tpm: int) -> int:
    """Tokens per stored entry: 1 up to MAX_TOKEN_ENTRIES tpm, so small limits are counted exactly."""
    return -(-tpm // MAX_TOKEN_ENTRIES)


def _token_item(tpm: int) -> RateLimitItem:
    # "Reached" is `entries * unit >= tpm`, i.e. entries >= ceil(tpm / unit).
    return RateLimitItemPerMinute(-(-tpm // _token_unit(tpm)), namespace="tpm")


def _token_entries(tokens: int, tpm: int) -> int:
    """Entries for `tokens`, rounded up: a response never counts less than it used."""
    return -(-tokens // _token_unit(tpm))
