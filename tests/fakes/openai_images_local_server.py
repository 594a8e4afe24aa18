"""A fake local OpenAI-compatible images server in two flavors: LocalAI and stable-diffusion.cpp's sd-server.

Usage::

    with FakeLocalImagesServer(flavor="localai", models=["stablediffusion"]) as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", provider="localai")
        server.script(LocalImagesReply(url_base="http://elsewhere.example"))

Faithful to the servers' sources (LocalAI ``core/http/endpoints/openai/image.go`` and ``core/schema``,
sd-server ``examples/server/routes_openai.cpp``):

- ``POST /v1/images/generations`` reads ``prompt``, ``n`` (0 counts as 1), ``size`` (``WxH``; LocalAI
  falls back to 512x512 for a size without ``x``, sd-server keeps its default) and makes real Pillow PNGs
  of that size. LocalAI answers ``{id, created, data: [{index: 0, b64_json | url}], usage: {zeros}}``,
  ``b64_json`` only when ``response_format`` is ``"b64_json"``, else a ``url`` to
  ``<scheme>://<Host header>/generated-images/<name>.png`` that this fake serves. sd-server always
  answers ``{created, data: [{b64_json}], output_format}`` and ignores ``response_format``; an empty
  prompt is its 400 ``{"error": "prompt required"}``.
- Errors: LocalAI ``{"error": {"code": <status>, "message", "type": ""}}`` (most failures are 500);
  sd-server ``{"error": "..."}``, a 500 with ``{"error": "server_error", "message"}``.
- ``GET /v1/models``: LocalAI ``{object: "list", data: [{id, object: "model"}]}``; sd-server its one
  ``{id: "sd-cpp-local", object: "model", owned_by: "local"}``.

Scripted `LocalImagesReply` fields: `status` + `error_body` (None renders the flavor's default body),
`raw`, `headers`, `delay`, `drop_after`, `url_base` (the URLs point there instead of this server: for
the other-host refusal), `bad_image` (the first image's base64 does not decode), `not_an_image` (the
served URL answers bytes that are not an image), `missing_file` (the served URL is a 404).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply
from tests.fakes.images import make_image

FLAVORS = ("localai", "sdcpp")
_COLORS = [(30, 144, 255), (255, 99, 71), (50, 205, 50), (238, 130, 238)]


@dataclass
class LocalImagesReply(Reply):
    """A scripted generation answer (see the module docstring)."""

    url_base: str | None = None
    bad_image: bool = False
    not_an_image: bool = False
    missing_file: bool = False


def error_payload(flavor: str, status: int, message: str) -> Any:
    """An error body in the flavor's shape."""
    if flavor == "localai":
        return {"error": {"code": status, "message": message, "type": ""}}
    if status >= 500:
        return {"error": "server_error", "message": message}
    return {"error": message}


class FakeLocalImagesServer(FakeServer):
    name = "local-images"

    def __init__(
        self,
        flavor: str = "localai",
        models: list[str] | None = None,
        default: LocalImagesReply | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
        super().__init__(default or LocalImagesReply())
        self.flavor = flavor
        self.models = list(models if models is not None else ["stablediffusion"])
        self.files: dict[str, bytes] = {}  # what /generated-images/<name> serves

    def reset(self) -> None:
        super().reset()
        self.files.clear()

    def _reply(self) -> LocalImagesReply:
        reply = self.next_reply()
        return reply if isinstance(reply, LocalImagesReply) else LocalImagesReply(**vars(reply))

    def routes(self) -> list[Route]:
        return [
            Route("/v1/images/generations", self._generations, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/generated-images/{name}", self._file, methods=["GET"]),
        ]

    async def _models(self, request: Request) -> Response:
        await self.record(request)
        if self.flavor == "sdcpp":
            return JSONResponse({"data": [{"id": "sd-cpp-local", "object": "model", "owned_by": "local"}]})
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    async def _file(self, request: Request) -> Response:
        await self.record(request)
        data = self.files.get(request.path_params["name"])
        if data is None:
            return Response("Cannot GET", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png")

    async def _generations(self, request: Request) -> Response:
        rec = await self.record(request)
        reply = self._reply()
        await self.pause(reply.delay)
        if reply.status >= 400:
            failure = reply.error_body
            if failure is None:
                failure = error_payload(self.flavor, reply.status, f"scripted failure ({reply.status})")
            return self.json_response(failure, reply)
        try:
            body = json.loads(rec.body)
        except ValueError as exc:
            return JSONResponse(error_payload(self.flavor, 500, f"failed parsing request body: {exc}"), 500)
        prompt = body.get("prompt") or ""
        if self.flavor == "sdcpp" and not prompt:
            return JSONResponse(error_payload(self.flavor, 400, "prompt required"), 400)
        n = max(1, int(body.get("n") or 1))
        width, height = self._size(str(body.get("size") or ""))
        pngs = [make_image(width, height, "PNG", _COLORS[i % len(_COLORS)]) for i in range(n)]
        if self.flavor == "sdcpp":
            payload: dict[str, Any] = {
                "created": int(time.time()),
                "data": [{"b64_json": self._b64(png)} for png in pngs],
                "output_format": body.get("output_format", "png"),
            }
        else:
            as_b64 = body.get("response_format") == "b64_json"
            base = reply.url_base or f"{request.url.scheme}://{request.headers.get('host', '')}"
            items = []
            for png in pngs:
                if as_b64:
                    items.append({"index": 0, "b64_json": self._b64(png)})
                    continue
                name = f"b64{uuid.uuid4().hex[:10]}.png"
                if not reply.missing_file:
                    self.files[name] = b"<html>not an image</html>" if reply.not_an_image else png
                items.append({"index": 0, "url": f"{base}/generated-images/{name}"})
            payload = {
                "created": int(time.time()),
                "id": str(uuid.uuid4()),
                "data": items,
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        if reply.bad_image and "b64_json" in payload["data"][0]:
            payload["data"][0]["b64_json"] = "%%% not base64 %%%"
        return self.json_response(payload, reply)

    def _size(self, size: str) -> tuple[int, int]:
        if "x" not in size:
            return 512, 512
        w, _, h = size.partition("x")
        try:
            return int(w), int(h)
        except ValueError:
            return 512, 512

    @staticmethod
    def _b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")
