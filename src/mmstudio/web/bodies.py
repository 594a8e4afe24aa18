"""Request bodies and query parameters read by hand, so every bad input is a 400 naming the field in
the words of this API (the app turns FastAPI's own validation errors into the same 400), while the
OpenAPI document still describes the body."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from mmstudio.errors import InvalidRequest
from mmstudio.web.constraints import describe

M = TypeVar("M", bound=BaseModel)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is read with `parse_body` (its nested models inlined: a
    `#/$defs/...` reference would point into the OpenAPI document, not the schema)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(
                    {
                        **definitions[ref.removeprefix("#/$defs/")],
                        **{k: v for k, v in node.items() if k != "$ref"},
                    }
                )
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


async def parse_body(request: Request, model: type[M]) -> M:
    return validate(model, await json_object(request))


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what it is instead."""
    raw = await request.body()
    try:
        payload = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    return payload


def validate(model: type[M], payload: dict[str, Any]) -> M:
    """`payload` (a JSON object, or a form's fields) as `model`, or a 400 naming every problem."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = [describe(err, ".".join(str(p) for p in err["loc"]) or "body") for err in exc.errors()]
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


IMAGE_UPLOAD_TYPES = "image/png, image/jpeg, image/webp, image/gif"
"""What an image upload may be (`encoding.contentType` of its file part)."""


def file_encoding(names: tuple[str, ...], content_types: str) -> dict[str, Any]:
    """The `encoding` of a form's file parts: their types, and a filename on each (a part without one
    is a plain text field to a form parser)."""
    disposition = 'form-data; name="{0}"; filename="{0}"'
    return {
        name: {
            "contentType": content_types,
            "headers": {
                "Content-Disposition": {"schema": {"type": "string", "example": disposition.format(name)}}
            },
        }
        for name in names
    }


def upload_body(
    files: dict[str, str],
    *,
    content_types: str,
    fields: dict[str, dict[str, Any]] | None = None,
    required: tuple[str, ...] | None = None,
    many: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`openapi_extra` for a route that reads a multipart form by hand: `files` (name → description)
    are file parts of `content_types`, the ones in `many` a list of 1 or more; `fields` are plain
    ones (name → JSON Schema). Every file is required unless `required` names the ones that are."""
    properties: dict[str, Any] = {}
    for name, description in files.items():
        part = {"type": "string", "format": "binary", "description": description}
        properties[name] = {"type": "array", "items": part, "minItems": 1} if name in many else part
    properties.update(fields or {})
    schema = {
        "type": "object",
        "required": list(required if required is not None else files),
        "properties": properties,
        "additionalProperties": False,
    }
    # A file part without a filename is a plain field to a form parser: every file part has one.
    encoding = file_encoding(tuple(files), content_types)
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema, "encoding": encoding}},
        }
    }


def check_form(form: Any, allowed: set[str]) -> None:
    """A 400 naming the form's fields that the route does not read (its schema has no others)."""
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown form field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}",
            field=unknown[0],
        )


async def read_upload(request: Request, what: str) -> tuple[bytes, str | None]:
    """The bytes and filename of the one file a form sends as `file` (`what` names it in errors), or a
    400 saying how to send it; the form holds nothing else."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(
            f"send the {what} as multipart/form-data, in a file field named 'file'", field="file"
        )
    async with request.form(max_files=1, max_fields=4) as form:
        item = form.get("file")
        if item is None or isinstance(item, str):
            raise InvalidRequest(f"send the {what} as a multipart file field named 'file'", field="file")
        check_form(form, {"file"})
        return await item.read(), item.filename
