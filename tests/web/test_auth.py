"""Gateway keys through the real app: which routes need a key, both header styles, error shapes,
the admin API (bootstrap, admin-only, revoke) and what reaches the database and the log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Message

from mmstudio.settings import Settings
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.web.conftest import app_client

ENV_KEY = "env-gateway-key-SECRET-0123456789"

Open = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


def build_app(data_dir: Path, **extra: str) -> FastAPI:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(None, None), **extra}
    return create_app(Settings.from_env(env), environ=env)


@pytest.fixture
def open_client(data_dir: Path) -> Open:
    """`async with open_client(MMSTUDIO_API_KEYS=...) as client` → the real app on a fresh data dir."""

    @contextlib.asynccontextmanager
    async def make(**extra: str) -> AsyncIterator[httpx.AsyncClient]:
        async with app_client(build_app(data_dir, **extra)) as client:
            yield client

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_open_by_default(open_client: Open) -> None:
    async with open_client() as client:
        assert (await client.get("/api/models")).status_code == 200
        assert (await client.get("/api/admin/keys")).json() == {"keys": []}
        assert (await client.get("/v1/models")).status_code != 401
        assert (await client.get("/metrics")).status_code != 401
        # Clients that always send some key (the OpenAI SDK does) are not refused either.
        assert (await client.get("/api/models", headers=bearer("sk-dummy"))).status_code == 200


async def test_env_keys_protect_api_v1_and_metrics_only(open_client: Open) -> None:
    async with open_client(MMSTUDIO_API_KEYS=f"{ENV_KEY}, second-env-key-000000") as client:
        for path in ("/healthz", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/")).status_code == 307

        missing = await client.get("/api/models")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "Unauthorized"
        assert "Authorization: Bearer" in missing.json()["message"]
        assert (await client.get("/api/models", headers=bearer(ENV_KEY))).status_code == 200
        assert (await client.get("/api/models", headers={"authorization": f"bearer {ENV_KEY}"})).is_success
        assert (await client.get("/api/models", headers={"x-api-key": "second-env-key-000000"})).is_success

        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer(ENV_KEY))).status_code != 401
        assert (await client.get("/api")).status_code == 401
        assert (await client.get("/v1")).status_code == 401

        # CORS preflight carries no credentials and is not refused.
        preflight = await client.options("/v1/chat/completions", headers={"Origin": "http://x.test"})
        assert preflight.status_code != 401


async def test_wrong_key_error_shapes_never_echo_the_key(open_client: Open) -> None:
    wrong = "sk-wrong-PRESENTED-KEY-abcdef123456"
    async with open_client(MMSTUDIO_API_KEYS=ENV_KEY) as client:
        openai = await client.get("/v1/models", headers=bearer(wrong))
        assert openai.status_code == 401 and openai.headers["www-authenticate"] == "Bearer"
        error = openai.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        assert error["message"] == "Unknown or revoked gateway key"
        missing = (await client.post("/v1/chat/completions", json={})).json()["error"]
        assert missing["type"] == "authentication_error" and "Bearer" in missing["message"]

        studio = await client.get("/api/models", headers={"x-api-key": wrong})
        assert studio.status_code == 401
        assert studio.json() == {"error": "Unauthorized", "message": "Unknown or revoked gateway key"}
        for response in (openai, studio):
            assert wrong not in response.text and ENV_KEY not in response.text
            assert wrong[:12] not in response.text


async def test_first_key_bootstraps_admin_and_admin_routes(open_client: Open) -> None:
    async with open_client() as client:
        created = await client.post("/api/admin/keys", json={"name": "laptop"})
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        admin = created.json()
        assert admin["admin"] is True and admin["key"].startswith("mms-")
        assert admin["prefix"] == admin["key"][:12]
        assert set(admin) == {
            "id",
            "name",
            "prefix",
            "admin",
            "rpm",
            "tpm",
            "tiers",
            "created_at",
            "revoked_at",
            "key",
        }
        assert admin["tiers"] is None  # not scoped to story tiers
        admin_key = admin["key"]

        # Auth is now on.
        assert (await client.get("/api/models")).status_code == 401
        assert (await client.post("/api/admin/keys", json={"name": "sneaky"})).status_code == 401
        assert (await client.get("/api/models", headers=bearer(admin_key))).status_code == 200

        made = await client.post(
            "/api/admin/keys", json={"name": "app", "rpm": 60, "tpm": 5000}, headers=bearer(admin_key)
        )
        assert made.status_code == 201
        app = made.json()
        assert app["admin"] is False and (app["rpm"], app["tpm"]) == (60, 5000)
        app_key = app["key"]
        assert (await client.get("/api/models", headers={"x-api-key": app_key})).status_code == 200

        listed = await client.get("/api/admin/keys", headers=bearer(admin_key))
        assert [k["name"] for k in listed.json()["keys"]] == ["laptop", "app"]
        assert all("key" not in k and "key_hash" not in k for k in listed.json()["keys"])
        assert admin_key not in listed.text and app_key not in listed.text
        assert hashlib.sha256(app_key.encode()).hexdigest() not in listed.text

        # A key that is not an admin key cannot manage keys.
        for method, path in (
            ("GET", "/api/admin/keys"),
            ("POST", "/api/admin/keys"),
            ("DELETE", f"/api/admin/keys/{admin['id']}"),
        ):
            kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "POST" else {}
            denied = await client.request(method, path, headers=bearer(app_key), **kwargs)
            assert denied.status_code == 403, (method, denied.text)
            assert denied.json() == {"error": "Forbidden", "message": "This needs an admin gateway key"}

        revoked = await client.delete(f"/api/admin/keys/{app['id']}", headers=bearer(admin_key))
        assert revoked.status_code == 204
        gone = await client.get("/api/models", headers=bearer(app_key))
        assert gone.status_code == 401 and app_key not in gone.text
        missing = await client.delete("/api/admin/keys/no-such-id", headers=bearer(admin_key))
        assert missing.status_code == 404 and missing.json()["error"] == "Not found"
        listed = (await client.get("/api/admin/keys", headers=bearer(admin_key))).json()["keys"]
        assert next(k for k in listed if k["name"] == "app")["revoked_at"] is not None


async def test_create_key_validation(open_client: Open) -> None:
    async with open_client() as client:
        for body, field in (
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"name": "ok", "rpm": 0}, "rpm"),
            ({"name": "ok", "tpm": "lots"}, "tpm"),
            ({"name": "ok", "key": "mms-chosen-by-me"}, "key"),
        ):
            response = await client.post("/api/admin/keys", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"] == "Invalid request" and field in response.json()["message"]
        assert (await client.get("/api/admin/keys")).json() == {"keys": []}


async def test_another_process_key_locks_admin_routes_at_once(data_dir: Path) -> None:
    # Two apps on one database, as two `mmstudio serve` processes would be.
    async with app_client(build_app(data_dir)) as first:
        assert (await first.get("/api/admin/keys")).status_code == 200  # migrated before `second` starts
        async with app_client(build_app(data_dir)) as second:
            assert (await second.get("/api/admin/keys")).status_code == 200  # auth off, cached
            key = (await first.post("/api/admin/keys", json={"name": "laptop"})).json()["key"]
            # The admin routes ask the database, not the cache: no second bootstrap key.
            assert (await second.post("/api/admin/keys", json={"name": "sneaky"})).status_code == 401
            # A key `second` has never seen is looked up at once.
            assert (await second.get("/api/models", headers=bearer(key))).status_code == 200


async def test_plain_key_never_reaches_the_database_files_or_the_log(
    open_client: Open, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_client() as client:
        key = (await client.post("/api/admin/keys", json={"name": "laptop"})).json()["key"]
        assert (await client.get("/api/models", headers=bearer(key))).status_code == 200
        assert (await client.get("/api/models", headers=bearer(key + "x"))).status_code == 401
        files = [data_dir / "mmstudio.db", data_dir / "mmstudio.db-wal"]
        stored = b"".join(p.read_bytes() for p in files if p.exists())
    assert (data_dir / "mmstudio.db").exists()
    assert key.encode() not in stored and key[4:20].encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    assert key not in caplog.text and key[4:20] not in caplog.text


async def test_streaming_response_streams_through_the_middleware(data_dir: Path) -> None:
    app = build_app(data_dir, MMSTUDIO_API_KEYS=ENV_KEY)
    first_chunk_sent = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        # Only reached if "one" went out before the response finished: nothing buffered it.
        await first_chunk_sent.wait()
        yield b"two"

    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/plain")

    app.add_api_route("/api/test-stream", stream)
    received: list[Message] = []

    async def send(message: Message) -> None:
        received.append(message)
        if message["type"] == "http.response.body" and message.get("body") == b"one":
            first_chunk_sent.set()

    disconnected = asyncio.Event()
    requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        with contextlib.suppress(StopIteration):
            return next(requests)
        await disconnected.wait()
        return {"type": "http.disconnect"}

    def scope(key: str) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/test-stream",
            "raw_path": b"/api/test-stream",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"studio.test"), (b"authorization", f"Bearer {key}".encode())],
            "client": ("127.0.0.1", 1),
            "server": ("studio.test", 80),
        }

    async with app_client(app):
        await asyncio.wait_for(app(scope(ENV_KEY), receive, send), 10)
        disconnected.set()
        bodies = [m.get("body", b"") for m in received if m["type"] == "http.response.body"]
        assert received[0]["status"] == 200 and b"".join(bodies) == b"onetwo"
        assert len([b for b in bodies if b]) == 2  # two separate chunks, not one buffered body

        received.clear()
        await asyncio.wait_for(app(scope("wrong"), receive, send), 10)
        assert received[0]["status"] == 401
