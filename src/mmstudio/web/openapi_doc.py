"""The OpenAPI document, made to say every status a route can answer and the error body it answers with.

FastAPI documents the success answer of each route and its own 422. The studio answers bad input with
400 everywhere (web/errors.py), and every route can also answer the errors its middleware and the error
tree produce. `install` wraps `app.openapi` so each operation declares them, with one shared error schema
per API family (OpenAI's shape on `/v1`, the studio's on the rest):

- 400 when it takes parameters or a body; 409 and 413 when it takes a body (a name taken, too large);
  415 when the body is an upload;
- 404 when its path has parameters (an id that does not exist, or a tier that is not there);
- 401 and 403 on the routes that need a gateway key once keys are on (`web/auth.is_protected`);
- 503 on every route but `/healthz` (the studio is still starting, or no model is usable);
- 429, 502 and 504 on the routes that call a model (rate limits, the upstream's error or timeout), and
  on registering an endpoint (its connection test).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from mmstudio.web.auth import is_protected
from mmstudio.web.errors import is_openai_path

STUDIO_ERROR = "StudioError"
OPENAI_ERROR = "OpenAIError"

_SCHEMAS: dict[str, dict[str, Any]] = {
    STUDIO_ERROR: {
        "type": "object",
        "title": STUDIO_ERROR,
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "what kind of error, e.g. 'Invalid request'"},
            "message": {"type": "string", "description": "what was wrong and what is allowed"},
            "field": {"type": "string", "description": "the input that was wrong"},
        },
        "additionalProperties": True,
    },
    OPENAI_ERROR: {
        "type": "object",
        "title": OPENAI_ERROR,
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
                "additionalProperties": True,
            }
        },
        "additionalProperties": True,
    },
}

_DESCRIPTIONS = {
    400: "Bad input: what was wrong and what is allowed",
    401: "A gateway key is needed (keys are on)",
    403: "The key may not use this route",
    404: "Not found: an id in the path, or an id or model named in the body",
    409: "The input clashes with what is stored (a name or alias taken)",
    413: "The request body is too large",
    415: "The upload is not of a type this route reads",
    429: "Rate limited",
    502: "The model's server answered with an error",
    503: "The studio is starting, or no model is usable",
    504: "The model's server did not answer in time",
}


def _either(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# The POST operations that call a model.
_CALLS_MODELS = _either(
    r"^/v1/",
    r"^/api/chat(/|$)",
    r"^/api/codegen",
    r"^/api/compare",
    r"^/api/images",
    r"^/api/videos",
    r"^/api/video-studio/projects/[^/]+/(generate|clips)",
    r"^/api/stories/[^/]+/(stories|scenes)",
    r"^/\{tier\}/story/",
    r"^/api/models/endpoints",
)
# The operations that answer server-sent events: always (GET `.../events`), or when asked (the POSTs
# below with `stream: true`, and a running answer re-attached).
_EVENTS_ONLY = re.compile(r"/events$")
_MAY_STREAM = _either(
    r"^/v1/chat/completions$",
    r"^/api/chat$",
    r"^/api/chat/ui/(send|compare)$",
    r"^/api/chat/ui/messages/\{message_id\}/(edit|regenerate)$",
    r"^/api/codegen$",
    r"^/api/images$",
)
_REATTACH = re.compile(r"^/api/chat/ui/messages/\{message_id\}/stream$")
_METHODS = ("get", "put", "post", "delete", "patch")
_EVENT_STREAM = {"schema": {"description": "server-sent events: each event's data is JSON"}}


def _calls_models(method: str, path: str) -> bool:
    return method == "post" and _CALLS_MODELS.search(path) is not None


def statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses the operation can answer (besides the ones it documents itself)."""
    parameters = operation.get("parameters") or []
    body = operation.get("requestBody")
    found: set[int] = set()
    reads_body = body is not None or method in ("post", "put", "patch")
    if parameters or reads_body:
        found.add(400)
    if reads_body:
        found |= {409, 413}
        if body is None or "multipart/form-data" in (body.get("content") or {}):
            found.add(415)  # a body read by hand (an upload) or a form
    if reads_body or any(p.get("in") == "path" for p in parameters):
        found.add(404)  # an id that does not exist, in the path or named in the body
    if is_protected(path) or path.startswith("/{tier}/story/"):
        found |= {401, 403}
    if path != "/healthz":
        found.add(503)
    if _calls_models(method, path):
        found |= {429, 502, 504}
    return found


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every operation's error statuses declared (changed in place, and returned)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_SCHEMAS)
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, item in schema.get("paths", {}).items():
        ref = {"$ref": f"#/components/schemas/{OPENAI_ERROR if is_openai_path(path) else STUDIO_ERROR}"}
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # bad input is a 400 here, never FastAPI's 422
            _streams(method, path, responses)
            for status in sorted(statuses(method, path, operation)):
                responses.setdefault(
                    str(status),
                    {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": ref}}},
                )
    return schema


def _streams(method: str, path: str, responses: dict[str, Any]) -> None:
    """Declare `text/event-stream` on the success answer of the operations that stream."""
    only = method == "get" and _EVENTS_ONLY.search(path) is not None
    may = (method == "post" and _MAY_STREAM.search(path)) or (method == "get" and _REATTACH.search(path))
    if not only and not may:
        return
    success = next((code for code in sorted(responses) if code.startswith("2")), "200")
    answer = responses.setdefault(success, {"description": "Successful Response"})
    content = answer.setdefault("content", {})
    if only:
        content.clear()
    content["text/event-stream"] = _EVENT_STREAM


def template_for(schema: dict[str, Any], path: str) -> str | None:
    """The documented path template `path` is of: the most specific one (fewest parameters), so
    `/projects/1/clips/undo` is `/projects/{project_id}/clips/undo`, not `.../clips/{clip_id}`."""
    found = []
    for template in schema.get("paths", {}):
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            found.append((template.count("{"), template))
    return min(found)[1] if found else None


def install(app: FastAPI) -> None:
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
