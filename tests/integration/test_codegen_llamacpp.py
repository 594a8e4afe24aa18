"""Creator Studio through a real llama.cpp server: registered as the user's model, made active, asked
to generate. The tiny random model writes nonsense, so this checks the flow (routing, streaming,
persistence, session and metrics), not the code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mmstudio.config import CodegenConfig, StudioConfig
from mmstudio.settings import Settings
from mmstudio.web.app import create_app
from tests.domain.conftest import local_env
from tests.integration.conftest import _require_llama_cpp_server
from tests.integration.llamacpp_server import LlamaCppServer
from tests.web.conftest import app_client
from tests.web.test_codegen_api import events

pytestmark = [pytest.mark.llamacpp, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def llamacpp_codegen(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    """Room for Creator Studio's prompt (the tiny vocabulary spends a token on most characters)."""
    _require_llama_cpp_server()
    server = LlamaCppServer(tiny_gguf, alias="tiny", n_ctx=2048, log_dir=tmp_path_factory.mktemp("codegen"))
    with server:
        yield server


async def test_codegen_through_a_real_llama_cpp_server(
    llamacpp_codegen: LlamaCppServer, data_dir: Path
) -> None:
    env = {"MMSTUDIO_DATA_DIR": str(data_dir), **local_env(None, None)}
    config = StudioConfig(codegen=CodegenConfig(max_output_tokens=256))
    app = create_app(replace(Settings.from_env(env), config=config), environ=env)
    async with app_client(app) as client:
        created = await client.post(
            "/api/models/endpoints",
            json={
                "platform": "openai_compat",
                "base_url": llamacpp_codegen.base_url,
                "model": "tiny",
                "display_name": "Tiny Llama",
            },
        )
        assert created.status_code == 201, created.text
        model_id = created.json()["models"][0]["model_id"]
        assert (await client.put("/api/models/active", json={"model": model_id})).status_code == 200

        body = {
            "projectName": "Hello",
            "description": "A hello world script",
            "framework": "python-cli",
            "targetType": "script",
            "stream": True,
        }
        async with client.stream("POST", "/api/codegen", json=body, timeout=90) as response:
            assert response.status_code == 200
            seen = [e async for e in events(response)]
        names = [n for n, _ in seen]
        assert names[:3] == ["project", "plan", "attempt"]
        assert seen[2][1]["model"] == model_id and seen[2][1]["modelName"] == "Tiny Llama"
        assert seen[2][1]["kind"] == "local"
        text = "".join(d["text"] for n, d in seen if n == "text")
        assert text.strip(), "the real server streamed no text"
        end, last = seen[-1]
        # Whatever the nonsense, the model answered: one successful attempt, text kept with the project.
        assert [(a["model"], a["outcome"]) for a in last["attempts"]] == [(model_id, "ok")]
        project = (await client.get(f"/api/codegen/projects/{seen[0][1]['projectId']}")).json()
        assert project["rawText"] == text and project["modelUsed"] == model_id
        if end == "error":
            assert "Tiny Llama answered, but wrote no files" in last["message"]
            assert project["status"] == "failed"
        else:
            assert end == "done" and project["status"] == "complete"
        models = {m["id"]: m for m in (await client.get("/api/models")).json()["models"]}
        assert models[model_id]["sessions"] == 1
        assert f'model="{model_id}",outcome="ok",provider=' in (await client.get("/metrics")).text
