"""Tiers stay apart: every story route that takes an id, asked through another tier with the first
tier's ids, answers 404 (never 403: nothing confirms it exists), with an admin key and with a key scoped
to the other tier; a key scoped to `kids` reaches kids and nothing else (another tier is not found, any
other route is forbidden)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute

from mmstudio.config import TierConfig
from mmstudio.web import story_api
from tests.fakes.base import Reply
from tests.fakes.images import make_image
from tests.fakes.ollama_server import FakeOllamaServer
from tests.fakes.openai_images_server import FakeOpenAIImagesServer
from tests.gateway.conftest import OpenLive
from tests.gateway.test_stories import KIDS, config, env_for, scene_text
from tests.gateway.test_videos import sse_events

TIERED = re.compile(r"^/api/stories/\{tier\}|^/\{tier\}/story/")


async def test_every_story_route_keeps_tiers_apart_with_any_key(live: OpenLive) -> None:
    with FakeOllamaServer() as ollama, FakeOpenAIImagesServer(api_key="sk-iso-0123456789abcdef") as openai:
        running = await live(
            env_for(ollama, openai, None) | {"OPENAI_API_KEY": "sk-iso-0123456789abcdef"},
            config=config(teens=TierConfig(name="Teens")),
        )
        client = running.client
        admin = (await client.post("/api/admin/keys", json={"name": "admin"})).json()["key"]
        made = await client.post(
            "/api/admin/keys", json={"name": "kids app", "tiers": ["kids"]}, headers={"x-api-key": admin}
        )
        assert made.status_code == 201 and made.json()["tiers"] == ["kids"] and not made.json()["admin"]
        kids_key = made.json()["key"]
        teens_key = (
            await client.post(
                "/api/admin/keys", json={"name": "teens", "tiers": ["teens"]}, headers={"x-api-key": admin}
            )
        ).json()["key"]
        bad = await client.post(
            "/api/admin/keys", json={"name": "x", "tiers": ["pirates"]}, headers={"x-api-key": admin}
        )
        assert bad.status_code == 404

        kid = {"x-api-key": kids_key}
        ollama.script(Reply(text=scene_text("Kids only")))
        started = await client.post(f"{KIDS}/stories", json={"premise": "a kids story"}, headers=kid)
        assert started.status_code == 201, started.text
        story_id, scene_id = started.json()["story"]["id"], started.json()["scene"]["id"]
        written = (await follow_with(running, kid, scene_id))[-1][1]["scene"]
        await wait_done_with(running, admin, written["imageJobId"])
        image = (await client.get(f"/kids/story/image/{scene_id}", headers=kid)).json()
        assert image["status"] == "complete"
        asset_id = image["url"].rsplit("/", 1)[-1]
        photo = await client.post(
            f"{KIDS}/photos", files={"file": ("p.png", make_image(32, 32), "image/png")}, headers=kid
        )
        character = await client.post(
            f"{KIDS}/characters", json={"name": "Pip", "photo_ids": [photo.json()["id"]]}, headers=kid
        )
        assert character.status_code == 201, character.text
        ids = {
            "story_id": story_id,
            "scene_id": scene_id,
            "character_id": character.json()["id"],
            "asset_id": asset_id,
        }

        routes = [r for r in story_api.router.routes if isinstance(r, APIRoute) and TIERED.match(r.path)]
        with_ids = [r for r in routes if any(f"{{{name}}}" in r.path for name in ids)]
        assert len(with_ids) >= 15, [r.path for r in with_ids]  # every kind of id is tried
        tried = 0
        for route in with_ids:
            for method in sorted(route.methods - {"HEAD"}):
                path = route.path.replace("{tier}", "teens")
                for name, value in ids.items():
                    path = path.replace(f"{{{name}}}", value)
                for key in (admin, teens_key, kids_key):
                    body: Any = {} if method in ("POST", "PATCH", "PUT") else None
                    answer = await client.request(method, path, json=body, headers={"x-api-key": key})
                    assert answer.status_code == 404, (method, path, key[:8], answer.text)
                    tried += 1
        assert tried >= 45
        # the kids story is still whole after all that
        tree = (await client.get(f"{KIDS}/stories/{story_id}", headers=kid)).json()
        assert (
            tree["sceneCount"] == 1 and (await client.get(f"{KIDS}/characters", headers=kid)).json()["items"]
        )

        # a kids key reaches nothing but kids
        for path in ("/api/models", "/v1/models", "/api/images", "/api/jobs", "/api/admin/keys", "/metrics"):
            answer = await client.get(path, headers=kid)
            assert answer.status_code == 403, (path, answer.text)
            assert "scoped to the story tiers kids" in answer.text, (path, answer.text)
        assert (await client.get("/api/stories/teens", headers=kid)).status_code == 404
        assert (await client.get("/api/stories/teens", headers={"x-api-key": admin})).status_code == 200
        assert (await client.get(KIDS, headers=kid)).status_code == 200
        assert (await client.get(KIDS)).status_code == 401  # keys are on: none is no entry
        assert (await client.get(f"/kids/story/image/{scene_id}")).status_code == 401
        page = await client.get(f"/kids/story/{story_id}")  # a page is a shell: its data needs the key
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


async def follow_with(running: Any, headers: dict[str, str], scene_id: str) -> list[tuple[str, Any]]:
    async with running.client.stream("GET", f"{KIDS}/scenes/{scene_id}/events", headers=headers) as response:
        assert response.status_code == 200
        return [event async for event in sse_events(response)]


async def wait_done_with(running: Any, key: str, job_id: str) -> None:
    async with running.client.stream(
        "GET", f"/api/jobs/{job_id}/events", headers={"x-api-key": key}
    ) as response:
        events = [event async for event in sse_events(response)]
    assert events[-1][0] == "done", events


async def test_a_kids_key_reaches_only_the_models_the_kids_tier_allows(live: OpenLive) -> None:
    with FakeOllamaServer() as ollama, FakeOpenAIImagesServer(api_key="sk-iso-0123456789abcdef") as openai:
        running = await live(
            env_for(ollama, openai, None),
            config=config(kids=TierConfig(name="Kids", image_models=("openai/gpt-image-1-mini",))),
        )
        client = running.client
        admin = (await client.post("/api/admin/keys", json={"name": "admin"})).json()["key"]
        kid = {
            "x-api-key": (
                await client.post(
                    "/api/admin/keys", json={"name": "kids", "tiers": ["kids"]}, headers={"x-api-key": admin}
                )
            ).json()["key"]
        }
        offered = (await client.get(KIDS, headers=kid)).json()["imageModels"]
        assert [m["id"] for m in offered] == ["openai/gpt-image-1-mini"]  # GPT Image 1 is set up, not allowed
        refused = await client.post(
            f"{KIDS}/stories", json={"premise": "a kite", "image_model": "openai/gpt-image-1"}, headers=kid
        )
        assert refused.status_code == 400 and refused.json()["field"] == "image_model"
        assert "allowed: openai/gpt-image-1-mini" in refused.json()["message"]
        assert (await client.get(f"{KIDS}/stories", headers=kid)).json()["total"] == 0  # nothing stored
        # nor can the key ask any model directly, outside story mode
        direct = await client.post(
            "/v1/chat/completions",
            json={"model": "ollama/llama3.2:latest", "messages": [{"role": "user", "content": "hi"}]},
            headers=kid,
        )
        assert direct.status_code == 403
        image = await client.post(
            "/v1/images/generations", json={"model": "openai/gpt-image-1", "prompt": "a kite"}, headers=kid
        )
        assert image.status_code == 403 and openai.generation_bodies() == []
