"""The UI's fragment routes (/api/ui/...) and pages answer bad input with a 4xx naming the problem.

Never a 500, never a traceback: an unknown id, a wrong model, a missing or oversized field, a value
outside the allowed ones.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def client(ollama_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return ollama_app[1]


CASES = [
    # (method, path, form or None, expected status, words the answer must contain)
    ("GET", f"/api/ui/chat/conversations/{UNKNOWN}", None, 404, UNKNOWN),
    ("GET", f"/api/ui/chat/conversations/{UNKNOWN}/graph", None, 404, UNKNOWN),
    ("GET", f"/api/ui/chat/messages/{UNKNOWN}", None, 404, UNKNOWN),
    ("GET", "/api/ui/chat/conversations?q=" + "x" * 600, None, 400, "q"),
    ("GET", "/api/ui/chat/conversations?offset=-1", None, 400, "offset"),
    ("GET", "/api/ui/chat/conversations?archived=perhaps", None, 400, "archived"),
    ("POST", "/api/ui/header/active", {"model": "nope/nothing"}, 404, "nope/nothing"),
    ("POST", "/api/ui/header/active", {}, 400, "model"),
    ("POST", "/api/ui/header/active", {"model": "x" * 401}, 400, "model"),
    ("POST", "/api/ui/models/active", {"model": "nope/nothing"}, 404, "nope/nothing"),
    ("DELETE", f"/api/ui/models/endpoints/{UNKNOWN}", None, 404, UNKNOWN),
    ("GET", "/api/ui/models/list?kind=space", None, 400, "kind"),
    ("GET", f"/api/ui/compare/runs/{UNKNOWN}/answers", None, 404, UNKNOWN),
    ("GET", f"/api/ui/compare/runs/{UNKNOWN}/answers?side=x", None, 400, "side"),
]


@pytest.mark.parametrize(("method", "path", "form", "status", "words"), CASES)
async def test_bad_input_to_a_fragment_is_a_clear_4xx(
    client: httpx.AsyncClient, method: str, path: str, form: dict[str, str] | None, status: int, words: str
) -> None:
    response = await client.request(method, path, data=form)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.text
    assert "Traceback" not in response.text


async def test_pages_never_fail_on_odd_paths(client: httpx.AsyncClient) -> None:
    # A page for a conversation that does not exist is still the page: it says so when it loads.
    page = await client.get(f"/chat/c/{UNKNOWN}")
    assert page.status_code == 200 and f'data-conversation="{UNKNOWN}"' in page.text
    script = await client.get("/chat/c/%3Cscript%3E")
    assert script.status_code == 200 and "<script>" not in script.text.split('data-conversation="')[1][:20]
    assert (await client.get("/static/nope.js")).status_code == 404
    assert (await client.get("/static/../pyproject.toml")).status_code == 404
