"""Creator Studio's API through the real app against fake upstreams: the user's local model first,
the cloud fallback chain after it, every error the issue names, streaming, history and download.

The local model is LM Studio's (a fake) named "My Gemma 2B" and made active; the cloud is a fake
OpenAI reached through OPENAI_BASE_URL with a key set. The app runs under uvicorn, so a stream's events
reach the test as they are sent (the gates below depend on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmstudio.config import CodegenConfig, ModelConfig, RateLimit, Routing, StudioConfig, Timeouts
from mmstudio.settings import Settings
from tests.domain.conftest import local_env
from tests.fakes.base import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gateway.conftest import serve
from tests.gateway.test_compare import HeldLMStudio

GEMMA = "lmstudio/gemma-2-2b-it"
CLOUD = "openai/gpt-4o-mini"
TWO_FILES = (
    "Here is the component.\n\n"
    "File: src/components/Counter.tsx\n"
    "```tsx\n"
    "export function Counter() {\n  return <button>0</button>;\n}\n"
    "```\n\n"
    "File: src/components/Counter.css\n"
    "```css\n"
    "button { color: teal; }\n"
    "```\n"
    "Import it from App.tsx.\n"
)
BODY = {
    "projectName": "Counter",
    "description": "A counter button component",
    "framework": "react",
    "targetType": "component",
}


@pytest.fixture
def lmstudio() -> Iterator[HeldLMStudio]:
    with HeldLMStudio(flavor="lmstudio", models=["gemma-2-2b-it"]) as server:
        yield server


@pytest.fixture
def cloud() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(flavor="openai") as server:
        yield server


def studio_config(**codegen: Any) -> StudioConfig:
    return StudioConfig(
        models=(ModelConfig(id=GEMMA, name="My Gemma 2B"),),
        routing=Routing(retries=0),
        codegen=CodegenConfig(**codegen),
    )


@contextlib.asynccontextmanager
async def studio_client(
    data_dir: Path,
    lmstudio: FakeOpenAIServer | None,
    cloud: FakeOpenAIServer | None,
    config: StudioConfig | None = None,
    *,
    active: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(None, lmstudio)}
    if cloud is not None:
        env |= {"OPENAI_API_KEY": "sk-cloud-SECRET-123456", "OPENAI_BASE_URL": f"{cloud.url}/v1"}
    settings = replace(Settings.from_env(env), config=config or studio_config())
    async with serve(settings, env) as running:  # a real server: streams arrive as they are sent
        client = running.client
        await client.post("/api/models/detect")
        if active and lmstudio is not None:
            chosen = await client.put("/api/models/active", json={"model": "My Gemma 2B"})
            assert chosen.status_code == 200, chosen.text
        yield client


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def stream_all(client: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    async with client.stream("POST", "/api/codegen", json={**body, "stream": True}) as response:
        assert response.status_code == 200, await response.aread()
        return [e async for e in events(response)]


# -- the user's local model ---------------------------------------------------------------------


async def test_local_model_generates_files_and_says_who_and_how_fast(
    data_dir: Path, lmstudio: HeldLMStudio, cloud: FakeOpenAIServer
) -> None:
    lmstudio.script(Reply(text=TWO_FILES))
    async with studio_client(data_dir, lmstudio, cloud) as client:
        response = await client.post("/api/codegen", json=BODY)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["modelUsed"] == GEMMA and body["modelName"] == "My Gemma 2B"
        assert body["latencyMs"] > 0 and body["status"] == "complete"
        assert [(f["path"], f["language"]) for f in body["files"]] == [
            ("src/components/Counter.tsx", "tsx"),
            ("src/components/Counter.css", "css"),
        ]
        assert body["files"][1]["content"] == "button { color: teal; }\n"
        assert [(a["model"], a["outcome"]) for a in body["attempts"]] == [(GEMMA, "ok")]
        assert cloud.requests_to("/v1/chat/completions") == []
        # The prompt asks for the parseable shape and carries the user's words and choices.
        sent = lmstudio.requests_to("/v1/chat/completions")[0].json()
        system, user = sent["messages"][0]["content"], sent["messages"][1]["content"]
        assert "File: <relative/path/with/extension>" in system
        assert "A counter button component" in user and "React" in user and "Component" in user
        assert sent["max_tokens"] == 8192 and sent["stream"] is True

        # History, one project, its download.
        history = (await client.get("/api/codegen/projects")).json()
        assert history["total"] == 1
        item = history["items"][0]
        assert item["projectId"] == body["projectId"] and item["fileCount"] == 2
        assert item["modelName"] == "My Gemma 2B" and "files" not in item
        stored = (await client.get(f"/api/codegen/projects/{body['projectId']}")).json()
        assert stored["files"] == body["files"] and stored["rawText"] == TWO_FILES
        archive = await client.get(body["zipUrl"])
        assert archive.headers["content-type"] == "application/zip"
        assert 'filename="counter.zip"' in archive.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert zipped.namelist() == [
                "counter/src/components/Counter.tsx",
                "counter/src/components/Counter.css",
            ]
            assert zipped.read("counter/src/components/Counter.css") == b"button { color: teal; }\n"

        # A session of the model that produced it, and a metrics record for the codegen route.
        models = {m["id"]: m for m in (await client.get("/api/models")).json()["models"]}
        assert models[GEMMA]["sessions"] == 1
        prometheus = (await client.get("/metrics")).text
        assert (
            f'mmstudio_requests_total{{model="{GEMMA}",outcome="ok",provider="lmstudio",route="codegen"}} 1.0'
            in (prometheus)
        )


async def test_streaming_reports_the_model_tried_the_text_and_each_file_as_soon_as_it_is_complete(
    data_dir: Path, lmstudio: HeldLMStudio
) -> None:
    first_file_seen = asyncio.Event()
    chunks = [
        TWO_FILES[: TWO_FILES.index("File: src/components/Counter.css")],
        "File: src/components/Counter.css\n",
    ]
    chunks.append(TWO_FILES[len("".join(chunks)) :])
    lmstudio.script(Reply(chunks=chunks))
    loop = asyncio.get_running_loop()

    def opened() -> bool:  # the second file is held back until the first one has reached the client
        return (
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(first_file_seen.wait(), 10), loop).result()
            is True
        )

    lmstudio.hold("File: src/components/Counter.css", opened)
    seen: list[tuple[str, dict[str, Any]]] = []
    async with studio_client(data_dir, lmstudio, None) as client:
        async with client.stream("POST", "/api/codegen", json={**BODY, "stream": True}) as response:
            assert response.status_code == 200
            project_id = response.headers["x-mmstudio-project-id"]
            async for name, data in events(response):
                seen.append((name, data))
                if name == "file":
                    first_file_seen.set()
        names = [n for n, _ in seen]
        assert names[:3] == ["project", "plan", "attempt"]
        assert seen[0][1]["projectId"] == project_id and seen[0][1]["name"] == "Counter"
        assert seen[1][1]["candidates"][0] == {
            "model": GEMMA,
            "modelName": "My Gemma 2B",
            "kind": "local",
            "timeoutS": 30.0,
        }
        assert seen[2][1] == {
            "model": GEMMA,
            "modelName": "My Gemma 2B",
            "kind": "local",
            "index": 1,
            "timeoutS": 30.0,
        }
        files = [d["path"] for n, d in seen if n == "file"]
        assert files == ["src/components/Counter.tsx", "src/components/Counter.css"]
        # The first file arrived before the text of the second had been sent.
        first_file = names.index("file")
        text_before = "".join(d["text"] for n, d in seen[:first_file] if n == "text")
        assert "Counter.css" not in text_before
        assert "".join(d["text"] for n, d in seen if n == "text") == TWO_FILES
        assert names[-1] == "done" and seen[-1][1]["files"][0]["path"] == "src/components/Counter.tsx"
        # Following the finished project again replays it from storage.
        async with client.stream("GET", f"/api/codegen/projects/{project_id}/events") as again:
            replay = [n async for n, _ in events(again)]
        assert replay == ["project", "file", "file", "done"]


async def test_the_project_is_stored_before_the_model_answers(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    lmstudio.script(Reply(chunks=["File: a.py\n```python\n", "print(1)", "\n```\n"]))
    lmstudio.hold("print(1)", lambda: asyncio.run_coroutine_threadsafe(release.wait(), loop).result() is True)
    async with studio_client(data_dir, lmstudio, None) as client:
        async with client.stream("POST", "/api/codegen", json={**BODY, "stream": True}) as response:
            project_id = response.headers["x-mmstudio-project-id"]
            async for name, _data in events(response):
                if name == "text" and not release.is_set():  # the model has started; the rest is held
                    stored = (await client.get(f"/api/codegen/projects/{project_id}")).json()
                    assert stored["status"] == "generating"
                    assert stored["description"] == BODY["description"]
                    release.set()
        final = (await client.get(f"/api/codegen/projects/{project_id}")).json()
        assert final["status"] == "complete" and final["files"][0]["content"] == "print(1)\n"


# -- fallback ---------------------------------------------------------------------------------------


async def test_local_timeout_then_the_cloud_answers(
    data_dir: Path, lmstudio: HeldLMStudio, cloud: FakeOpenAIServer
) -> None:
    config = studio_config().model_copy(update={"timeouts": Timeouts(local=0.3, cloud=60)})
    lmstudio.script(Reply(text=TWO_FILES, delay=5))
    cloud.script(Reply(text=TWO_FILES))
    async with studio_client(data_dir, lmstudio, cloud, config) as client:
        seen = await stream_all(client, BODY)
    names = [n for n, _ in seen]
    assert names[:5] == ["project", "plan", "attempt", "attempt_failed", "attempt"]
    plan = seen[1][1]["candidates"]
    assert [(c["model"], c["kind"], c["timeoutS"]) for c in plan] == [
        (GEMMA, "local", 0.3),
        (CLOUD, "cloud", 60.0),
    ]
    failed = seen[3][1]
    assert (
        failed["model"] == GEMMA
        and failed["errorKind"] == "timeout"
        and failed["kind"] == "local"
        and "within 0.3 s" in failed["error"]
    )
    assert seen[4][1]["model"] == CLOUD and seen[4][1]["kind"] == "cloud"
    done = seen[-1][1]
    assert seen[-1][0] == "done" and done["modelUsed"] == CLOUD and len(done["files"]) == 2
    assert [(a["model"], a["outcome"]) for a in done["attempts"]] == [(GEMMA, "error"), (CLOUD, "ok")]
    assert cloud.requests_to("/v1/chat/completions")[0].json()["model"] == "gpt-4o-mini"


async def test_an_offline_local_model_is_skipped_straight_to_the_cloud(
    data_dir: Path, lmstudio: HeldLMStudio, cloud: FakeOpenAIServer
) -> None:
    cloud.script(Reply(text=TWO_FILES))
    async with studio_client(data_dir, lmstudio, cloud) as client:
        lmstudio.stop()
        health = (await client.get("/api/models/health", params={"refresh": True})).json()
        assert {e["id"]: e["health"]["status"] for e in health["endpoints"]}["lmstudio"] == "offline"
        seen = await stream_all(client, BODY)
    plan = seen[1][1]
    assert [c["model"] for c in plan["candidates"]] == [CLOUD]
    assert plan["skipped"][0]["model"] == GEMMA and "offline" in plan["skipped"][0]["reason"]
    done = seen[-1][1]
    assert done["modelUsed"] == CLOUD and [a["model"] for a in done["attempts"]] == [CLOUD]


async def test_the_fallback_chain_is_configurable(
    data_dir: Path, lmstudio: HeldLMStudio, cloud: FakeOpenAIServer
) -> None:
    lmstudio.script(Reply(status=500))
    cloud.script(Reply(text=TWO_FILES))
    config = studio_config(fallback_chain=("openai/gpt-4.1",))
    async with studio_client(data_dir, lmstudio, cloud, config) as client:
        body = (await client.post("/api/codegen", json=BODY)).json()
    assert body["modelUsed"] == "openai/gpt-4.1"
    assert [a["model"] for a in body["attempts"]] == [GEMMA, "openai/gpt-4.1"]


# -- errors ---------------------------------------------------------------------------------------


async def test_no_model_at_all_says_register_one_first_with_a_link(data_dir: Path) -> None:
    async with studio_client(data_dir, None, None) as client:
        response = await client.post("/api/codegen", json=BODY)
        assert response.status_code == 503
        body = response.json()
        assert body["message"].startswith("Register a model first") and body["link"] == "/onboarding"
        assert "OPENAI_API_KEY" in body["message"]
        assert (await client.get("/api/codegen/projects")).json()["total"] == 0  # nothing stored


async def test_local_failure_without_a_cloud_key_names_the_variable_to_set(
    data_dir: Path, lmstudio: HeldLMStudio
) -> None:
    lmstudio.script(Reply(status=500, error_body={"error": "model crashed: out of memory"}))
    async with studio_client(data_dir, lmstudio, None) as client:
        response = await client.post("/api/codegen", json=BODY)
        assert response.status_code == 502
        body = response.json()
        assert "out of memory" in body["message"]
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"):
            assert key in body["message"]
        assert [a["model"] for a in body["attempts"]] == [GEMMA] and body["status"] == "failed"
        stored = (await client.get(f"/api/codegen/projects/{body['projectId']}")).json()
        assert stored["status"] == "failed" and "OPENAI_API_KEY" in stored["error"]

        # Offline too: refused before anything is stored, with the same advice.
        lmstudio.stop()
        await client.get("/api/models/health", params={"refresh": True})
        offline = await client.post("/api/codegen", json=BODY)
        assert offline.status_code == 503
        assert "offline" in offline.json()["message"] and "OPENAI_API_KEY" in offline.json()["message"]
        assert (await client.get("/api/codegen/projects")).json()["total"] == 1


async def test_everything_failing_lists_each_attempt_and_its_cause(
    data_dir: Path, lmstudio: HeldLMStudio, cloud: FakeOpenAIServer
) -> None:
    lmstudio.script(Reply(status=500, error_body={"error": "local engine exploded"}))
    cloud.script(
        Reply(status=503, error_body={"error": {"message": "cloud is overloaded", "type": "server_error"}})
    )
    async with studio_client(data_dir, lmstudio, cloud) as client:
        response = await client.post("/api/codegen", json=BODY)
        body = response.json()
        assert response.status_code == 502
        assert [(a["model"], a["outcome"]) for a in body["attempts"]] == [(GEMMA, "error"), (CLOUD, "error")]
        assert "local engine exploded" in body["attempts"][0]["error"]
        assert "cloud is overloaded" in body["attempts"][1]["error"]
        assert "All 2 attempts failed" in body["message"]
        assert GEMMA in body["message"] and CLOUD in body["message"]
        assert "sk-cloud-SECRET" not in response.text

        # Streaming: the same as an `error` event, after each attempt was reported.
        lmstudio.script(Reply(status=500, error_body={"error": "local engine exploded"}))
        cloud.script(Reply(status=503))
        seen = await stream_all(client, BODY)
    names = [n for n, _ in seen]
    assert names == ["project", "plan", "attempt", "attempt_failed", "attempt", "attempt_failed", "error"]
    error = seen[-1][1]
    assert (
        error["status"] == "failed"
        and len(error["attempts"]) == 2
        and "All 2 attempts failed" in error["message"]
    )


async def test_rate_limit_per_user_answers_429_with_the_wait(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    assert CodegenConfig().rate_limit == RateLimit(rpm=100)  # the documented default
    lmstudio.script(*[Reply(text=TWO_FILES)] * 2)
    async with studio_client(data_dir, lmstudio, None, studio_config(rate_limit=RateLimit(rpm=2))) as client:
        for _ in range(2):
            assert (await client.post("/api/codegen", json=BODY)).status_code == 200
        refused = await client.post("/api/codegen", json=BODY)
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 60
        assert refused.json()["message"].startswith(f"Too many requests, wait {wait} s")
        assert len(lmstudio.requests_to("/v1/chat/completions")) == 2
        assert (await client.get("/api/codegen/projects")).json()["total"] == 2


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (
            {"framework": "angular"},
            "framework",
            "allowed: react, vue, svelte, fastapi, flask, node, python-cli",
        ),
        (
            {"targetType": "widget"},
            "targetType",
            "allowed: component, page, api, module, script, full-project",
        ),
        ({"projectName": "   "}, "projectName", "projectName is empty"),
        ({"description": ""}, "description", "description is empty"),
        ({"projectName": "x" * 121}, "projectName", "at most 120"),
        ({"framework": None}, "framework", "framework: Input should be a valid string"),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
async def test_bad_input_gets_a_400_naming_what_is_wrong(
    data_dir: Path, lmstudio: HeldLMStudio, change: dict[str, Any], field: str | None, says: str
) -> None:
    async with studio_client(data_dir, lmstudio, None) as client:
        response = await client.post("/api/codegen", json={**BODY, **change})
        assert response.status_code == 400, response.text
        assert says in response.json()["message"]
        if field is not None:
            assert response.json()["field"] == field
        assert lmstudio.requests_to("/v1/chat/completions") == []


async def test_an_unknown_model_is_a_404_listing_the_models(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    async with studio_client(data_dir, lmstudio, None) as client:
        response = await client.post("/api/codegen", json={**BODY, "model": "nobody/nothing"})
        assert response.status_code == 404, response.text
        assert "Unknown model 'nobody/nothing'" in response.json()["message"]
        assert response.json()["available"] and lmstudio.requests_to("/v1/chat/completions") == []


async def test_bad_requests_on_projects(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    async with studio_client(data_dir, lmstudio, None) as client:
        assert (await client.post("/api/codegen", content=b"{nope")).status_code == 400
        missing = await client.get("/api/codegen/projects/nope")
        assert missing.status_code == 404 and "'nope'" in missing.json()["message"]
        assert (await client.get("/api/codegen/projects/nope/zip")).status_code == 404
        assert (await client.get("/api/codegen/projects/nope/events")).status_code == 404
        assert (await client.delete("/api/codegen/projects/nope")).status_code == 404
        assert (await client.get("/api/codegen/projects", params={"limit": 0})).status_code == 400
        assert (await client.get("/api/codegen/projects", params={"limit": "x"})).status_code == 400
        options = (await client.get("/api/codegen/options")).json()
        assert [f["id"] for f in options["frameworks"]][:2] == ["react", "vue"]
        assert "full-project" in [t["id"] for t in options["targetTypes"]]


async def test_output_without_files_fails_clearly_and_keeps_the_text(
    data_dir: Path, lmstudio: HeldLMStudio
) -> None:
    lmstudio.script(Reply(text="I am sorry, I cannot write code today."))
    async with studio_client(data_dir, lmstudio, None) as client:
        response = await client.post("/api/codegen", json=BODY)
        assert response.status_code == 502
        body = response.json()
        assert "My Gemma 2B answered, but wrote no files" in body["message"]
        stored = (await client.get(f"/api/codegen/projects/{body['projectId']}")).json()
        assert stored["rawText"] == "I am sorry, I cannot write code today." and stored["status"] == "failed"


async def test_unsafe_paths_never_become_files(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    text = (
        "File: ../../etc/passwd\n```\nroot::0:0\n```\n"
        "File: /etc/cron.d/x\n```bash\necho owned\n```\n"
        "File: app/main.py\n```python\nprint('ok')\n```\n"
    )
    lmstudio.script(Reply(text=text))
    async with studio_client(data_dir, lmstudio, None) as client:
        body = (await client.post("/api/codegen", json=BODY)).json()
        assert [f["path"] for f in body["files"]] == ["app/main.py"]
        assert {s["path"] for s in body["skipped"]} >= {"../../etc/passwd", "/etc/cron.d/x"}
        archive = await client.get(body["zipUrl"])
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
            assert zipped.namelist() == ["counter/app/main.py"]


async def test_delete_forgets_a_project(data_dir: Path, lmstudio: HeldLMStudio) -> None:
    lmstudio.script(Reply(text=TWO_FILES))
    async with studio_client(data_dir, lmstudio, None) as client:
        project = (await client.post("/api/codegen", json=BODY)).json()
        assert (await client.delete(f"/api/codegen/projects/{project['projectId']}")).status_code == 204
        assert (await client.get(f"/api/codegen/projects/{project['projectId']}")).status_code == 404
        assert (await client.get("/api/codegen/projects")).json()["total"] == 0
