"""Request bodies and query parameters read by hand, so every bad input is a 400 naming the field in
the words of this API (the app turns FastAPI's own validation errors into the same 400), while the
OpenAPI document still describes the body."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from mmstudio.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is read with `parse_body`."""
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()]
        first = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "body"
        raise InvalidRequest("; ".join(problems), field=first) from None


MAX_OFFSET = 10**9  # a page's offset: far past any list, and within every database's integers


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number; got {raw!r}", field=name) from None
    if abs(value) > MAX_OFFSET:
        raise InvalidRequest(f"{name} must be at most {MAX_OFFSET}; got {raw}", field=name)
    return value


PAGE_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "how many items (1 to 100)",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
        {
            "name": "offset",
            "in": "query",
            "required": False,
            "description": "how many to skip",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        },
    ]
}
"""`openapi_extra` for a list route whose `limit` and `offset` are read with `int_param`."""
