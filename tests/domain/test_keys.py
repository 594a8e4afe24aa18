"""Gateway keys against a real database: env keys, bootstrap, revocation, and two processes sharing it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mmstudio.config import RateLimit
from mmstudio.domain.keys import GatewayKeys
from mmstudio.errors import InvalidRequest, NotFound, Unauthorized
from mmstudio.storage.db import create_engine, migrate, session_factory
from mmstudio.storage.keys_repo import KeyRepository
from tests.conftest import blank_postgres_database

ENV_KEY = "env-key-ALPHA-0123456789"
OTHER_ENV_KEY = "env-key-BETA-9876543210"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.sqlite'}"
    return await blank_postgres_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
async def open_repo(database_url: str) -> AsyncIterator[Any]:
    """`open_repo()` → a KeyRepository on its own engine, as another `mmstudio serve` would have."""
    engines: list[Any] = []

    def make() -> KeyRepository:
        engine = create_engine(database_url)
        engines.append(engine)
        return KeyRepository(session_factory(engine))

    first = create_engine(database_url)
    await migrate(first)
    await first.dispose()
    yield make
    for engine in engines:
        await engine.dispose()


async def test_off_by_default(open_repo: Any) -> None:
    keys = GatewayKeys(open_repo())
    await keys.load()
    assert keys.required is False
    assert await keys.authenticate(None) is None
    assert await keys.authenticate("anything-a-client-sends") is None  # SDKs send dummy keys


async def test_env_keys_are_admin_principals_and_errors_never_echo_keys(open_repo: Any) -> None:
    keys = GatewayKeys(open_repo(), (ENV_KEY, OTHER_ENV_KEY))
    await keys.load()
    assert keys.required is True
    second = await keys.authenticate(OTHER_ENV_KEY)
    assert second is not None and second.admin
    assert second.key_id == "env-" + hashlib.sha256(OTHER_ENV_KEY.encode()).hexdigest()[:12]
    assert second.name == "MMSTUDIO_API_KEYS #2" and second.limit is None
    first = await keys.authenticate(ENV_KEY)
    assert first is not None and first.name == "MMSTUDIO_API_KEYS #1"
    with pytest.raises(Unauthorized, match="Authorization: Bearer"):
        await keys.authenticate(None)
    wrong = ENV_KEY + "x"
    with pytest.raises(Unauthorized) as caught:
        await keys.authenticate(wrong)
    assert caught.value.message == "Unknown or revoked gateway key"
    assert wrong not in str(caught.value) and ENV_KEY not in str(caught.value)
    # With env keys the first stored key is not forced to admin: auth is already on.
    key, _ = await keys.create("ci")
    assert key.admin is False


async def test_first_key_is_admin_and_turns_auth_on(open_repo: Any) -> None:
    keys = GatewayKeys(open_repo())
    await keys.load()
    first, raw = await keys.create("  laptop  ", admin=False)
    assert first.admin is True and first.name == "laptop"
    assert keys.required is True
    assert raw.startswith("mms-") and len(raw) > 40 and first.prefix == raw[:12]
    assert raw not in repr(first)
    principal = await keys.authenticate(raw)
    assert principal is not None and principal.key_id == first.id and principal.admin
    with pytest.raises(Unauthorized):
        await keys.authenticate(None)
    app, app_raw = await keys.create("app", rpm=60, tpm=10_000)
    assert app.admin is False and app_raw != raw
    app_principal = await keys.authenticate(app_raw)
    assert app_principal is not None and not app_principal.admin
    assert app_principal.limit == RateLimit(rpm=60, tpm=10_000)
    assert [k.name for k in await keys.list()] == ["laptop", "app"]


async def test_create_rejects_bad_input(open_repo: Any) -> None:
    keys = GatewayKeys(open_repo())
    await keys.load()
    for kwargs in ({"name": "  "}, {"name": "x" * 101}, {"name": "ok", "rpm": 0}, {"name": "ok", "tpm": -1}):
        with pytest.raises(InvalidRequest):
            await keys.create(**kwargs)
    assert await keys.list() == [] and keys.required is False


async def test_revoke_takes_effect_at_once_and_last_revocation_turns_auth_off(open_repo: Any) -> None:
    keys = GatewayKeys(open_repo())
    await keys.load()
    admin, admin_raw = await keys.create("admin")
    app, app_raw = await keys.create("app")
    assert await keys.authenticate(app_raw) is not None  # now cached
    revoked = await keys.revoke(app.id)
    assert revoked.revoked_at is not None and not revoked.active
    with pytest.raises(Unauthorized):
        await keys.authenticate(app_raw)
    again = await keys.revoke(app.id)  # revoking twice keeps the first time
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        await keys.revoke("no-such-key")
    assert keys.required is True
    await keys.revoke(admin.id)
    assert keys.required is False and await keys.authenticate(None) is None
    listed = {k.name: k for k in await keys.list()}
    assert listed["app"].revoked_at is not None and listed["admin"].revoked_at is not None
    # Auth is off again, so the next key is an admin key once more.
    fresh, _ = await keys.create("new laptop")
    assert fresh.admin is True and admin_raw


async def test_two_processes_share_keys_through_the_database(open_repo: Any) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = GatewayKeys(open_repo(), clock=clock_a, cache_ttl=5.0)
    b = GatewayKeys(open_repo(), clock=clock_b, cache_ttl=5.0)
    await a.load()
    await b.load()

    # A turns auth on; B notices within the TTL.
    _, first_raw = await a.create("first")
    assert await b.authenticate(None) is None
    clock_b.advance(5.1)
    with pytest.raises(Unauthorized):
        await b.authenticate(None)
    assert b.required is True

    # A key B has never seen goes to the database: it works in B at once.
    second, second_raw = await a.create("second")
    principal = await b.authenticate(second_raw)
    assert principal is not None and principal.key_id == second.id

    # B has the key cached: A's revocation reaches B after the TTL, in A at once.
    await a.revoke(second.id)
    with pytest.raises(Unauthorized):
        await a.authenticate(second_raw)
    clock_b.advance(4.0)
    assert await b.authenticate(second_raw) is not None
    clock_b.advance(1.1)
    with pytest.raises(Unauthorized):
        await b.authenticate(second_raw)

    # Revoking every key turns auth off: here at once, in B within the TTL.
    first_id = next(k.id for k in await a.list() if k.name == "first")
    assert await b.authenticate(first_raw) is not None
    await a.revoke(first_id)
    assert a.required is False and await a.authenticate(None) is None
    assert b.required is True
    clock_b.advance(5.1)
    assert await b.authenticate(None) is None and b.required is False
