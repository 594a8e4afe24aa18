"""Creator Studio's fragments (/api/ui/codegen/...): bad input is a clear 4xx, a stored project renders
as a tree with highlighted, escaped code, and the history lists projects newest first."""

from __future__ import annotations

import asyncio
import re
import threading
from html import unescape
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mmstudio.domain.codegen.types import GeneratedFile, Skipped
from mmstudio.web.ui import creator_views
from mmstudio.web.ui.creator_views import file_tree, highlighted

UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def app(ollama_app: tuple[FastAPI, httpx.AsyncClient]) -> tuple[FastAPI, httpx.AsyncClient]:
    return ollama_app


@pytest.fixture
def client(app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app[1]


CASES = [
    # (path, expected status, words the answer must contain)
    (f"/api/ui/codegen/projects/{UNKNOWN}", 404, UNKNOWN),
    ("/api/ui/codegen/history?limit=0", 400, "limit"),
    ("/api/ui/codegen/history?limit=101", 400, "limit"),
    ("/api/ui/codegen/history?limit=many", 400, "limit"),
    ("/api/ui/codegen/history?offset=-1", 400, "offset"),
    ("/api/ui/codegen/history?current=" + "x" * 101, 400, "current"),
    ("/api/ui/codegen/models?model=" + "x" * 401, 400, "model"),
]


@pytest.mark.parametrize(("path", "status", "words"), CASES)
async def test_bad_input_to_a_creator_fragment_is_a_clear_4xx(
    client: httpx.AsyncClient, path: str, status: int, words: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.text
    assert "Traceback" not in response.text


async def stored(app: FastAPI, name: str, files: list[GeneratedFile], **fields: Any) -> str:
    """A finished project written straight to the store (no model involved)."""
    store = app.state.studio.codegen.store
    project = await store.create(
        name=name,
        description="Described <b>here</b>",
        framework="react",
        target_type="page",
        model_requested=None,
    )
    project.files = files
    project.file_count = len(files)
    project.status = fields.pop("status", "complete")
    for key, value in fields.items():
        setattr(project, key, value)
    await store.finish(project)
    return str(project.id)


async def test_a_project_renders_as_a_tree_with_escaped_highlighted_code(
    app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    made, client = app
    evil = '<script>alert("x")</script>\n'
    files = [
        GeneratedFile("src/App.tsx", "tsx", "export const a = 1;\n"),
        GeneratedFile("README.md", "markdown", "# Hi\n" + evil),
        GeneratedFile("public/index.html", "html", evil),
        GeneratedFile("src/lib/Thing.svelte", "svelte", "<p>{x}</p>\n"),
    ]
    project_id = await stored(
        made,
        "<img src=x onerror=alert(1)>",
        files,
        model_used="ollama/llama3.2:latest",
        model_name="My Llama",
        latency_ms=245.4,
        skipped=[Skipped("../etc/passwd", "climbs out of the project")],
    )
    html = (await client.get(f"/api/ui/codegen/projects/{project_id}")).text
    assert "<script>" not in html and "<img src=x" not in html and "<b>here</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'data-path="src/App.tsx"' in html and 'data-path="public/index.html"' in html
    assert '<span class="cr-dir-name">src</span>' in html and '<span class="cr-dir-name">lib</span>' in html
    assert '<span class="k' in html  # Pygments' token classes
    assert "My Llama" in html and "245 ms" in html
    assert "climbs out of the project" in html
    assert f'data-zip="/api/codegen/projects/{project_id}/zip"' in html

    history = (await client.get("/api/ui/codegen/history")).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in history and "<img src=x" not in history
    assert "React · Page · 4 files" in history and "My Llama" in history


async def test_a_failed_project_shows_its_error_and_each_attempt(
    app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    made, client = app
    attempts = [
        {
            "model": "ollama/llama3.2:latest",
            "provider": "ollama",
            "outcome": "error",
            "error": "connection refused",
            "kind": "unavailable",
            "latencyMs": 3.2,
        },
    ]
    project_id = await stored(
        made, "broken", [], status="failed", error="every model failed", attempts=attempts
    )
    html = (await client.get(f"/api/ui/codegen/projects/{project_id}")).text
    assert "Generation failed" in html and "Every model failed" in html
    assert "Connection refused" in html and "(unavailable)" in html
    assert "Download .zip" not in html


async def test_history_pages_newest_first(app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    made, client = app
    for n in range(3):
        await stored(made, f"project-{n}", [GeneratedFile("a.py", "python", "x = 1\n")])
    first = (await client.get("/api/ui/codegen/history?limit=2")).text
    assert first.index("project-2") < first.index("project-1") and "project-0" not in first
    assert "Show more (1 older)" in first and "offset=2" in first
    rest = (await client.get("/api/ui/codegen/history?limit=2&offset=2")).text
    assert "project-0" in rest and "Show more" not in rest and "<ul" not in rest


def test_the_tree_puts_folders_first_then_files_by_name() -> None:
    files = [GeneratedFile(p, "text", "") for p in ("b.txt", "src/z.py", "A.md", "src/app/x.py", "src/a.py")]
    root = file_tree(files)
    assert [f.path for f in root.files] == ["A.md", "b.txt"]
    (src,) = root.folders
    assert src.path == "src" and [f.path for f in src.files] == ["src/a.py", "src/z.py"]
    assert [f.path for f in src.folders[0].files] == ["src/app/x.py"]


def test_highlighting_keeps_the_text_exactly() -> None:
    text = "\n\n  def f():\n\treturn '<tag>'\n\n\n"
    html = highlighted(GeneratedFile("x.py", "python", text))
    assert unescape(re.sub(r"<[^>]+>", "", html)) == text
    assert highlighted(GeneratedFile("odd.unknownext", "nonsense", "<b>")) == "&lt;b&gt;"


async def test_highlighting_runs_off_the_event_loop(
    app: tuple[FastAPI, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Highlighting a big project takes seconds; other requests must be answered meanwhile. The real
    highlighter runs, held until /healthz has answered: on the event loop that could never happen."""
    made, client = app
    project_id = await stored(made, "big", [GeneratedFile("big.py", "python", "x = 1\n")])
    started, answered = threading.Event(), threading.Event()
    real = creator_views.highlighted

    def held(file: GeneratedFile) -> str:
        started.set()
        answered.wait(10)
        return real(file)

    monkeypatch.setattr(creator_views, "highlighted", held)
    fragment = asyncio.create_task(client.get(f"/api/ui/codegen/projects/{project_id}"))
    assert await asyncio.to_thread(started.wait, 10)
    assert (await client.get("/healthz")).status_code == 200
    assert not fragment.done()
    answered.set()
    response = await fragment
    assert response.status_code == 200 and "big.py" in response.text
