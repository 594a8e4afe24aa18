"""The OpenAPI document declares the statuses the studio answers (issue 19): bad input is a 400 with the
family's error schema everywhere (never FastAPI's 422), ids that may not exist a 404, keys 401/403,
model calls 429/502/504, and the streaming routes `text/event-stream`."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

METHODS = ("get", "put", "post", "delete", "patch")


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in schema["paths"].items() for m, op in item.items() if m in METHODS]


async def test_every_operation_declares_its_error_statuses(
    ollama_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ollama_app
    schema = (await client.get("/openapi.json")).json()
    ops = operations(schema)
    assert len(ops) > 100
    for method, path, op in ops:
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        if op.get("parameters") or op.get("requestBody"):
            error = responses["400"]["content"]["application/json"]["schema"]["$ref"]
            family = "OpenAIError" if path.startswith("/v1/") else "StudioError"
            assert error == f"#/components/schemas/{family}", (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if path.startswith(("/api/", "/v1/")):
            assert {"401", "403", "503"} <= set(responses), (method, path)
    assert {"429", "502", "504"} <= set(schema["paths"]["/v1/chat/completions"]["post"]["responses"])
    assert "415" in schema["paths"]["/api/media"]["post"]["responses"]  # an upload read by hand
    events = schema["paths"]["/api/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/event-stream"} <= set(chat)  # `stream: true` answers events
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_a_bad_query_parameter_is_a_400_naming_it(
    ollama_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = ollama_app
    for url, field in (
        ("/api/chat/ui/conversations?offset=-1", "offset"),
        ("/api/chat/ui/conversations?offset=19921336554430652416", "offset"),  # past any database's integers
        ("/api/jobs?offset=36893488147419103232", "offset"),
        ("/api/codegen/projects?limit=2&offset=43866510777198321256628224", "offset"),
    ):
        answer = await client.get(url)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["field"] == field and field in answer.json()["message"], answer.json()
    huge = await client.post("/api/admin/keys", json={"name": "k", "tpm": 235327305524087095296})
    assert huge.status_code == 400 and huge.json()["field"] == "tpm"
