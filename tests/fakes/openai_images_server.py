"""A fake OpenAI Images API (`/v1/images/generations`, `/v1/images/edits`, `/v1/models`) with real images.

Usage::

    with FakeOpenAIImagesServer(api_key="sk-test") as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", api_key="sk-test", provider="openai")
        server.script(ImagesReply(images=2, revised_prompt="a fox, in snow"))
        ...
        (edit,) = server.edits  # what the multipart edit carried

It is `FakeOpenAIServer` (flavor ``openai``: the key check, ``/v1/models``, OpenAI's error bodies and
``x-request-id``) plus the image routes, checked against the openai-python SDK types
(``ImagesResponse``, ``image_edit_params``) and OpenAI's API reference:

- ``POST /v1/images/generations`` takes JSON; ``POST /v1/images/edits`` takes multipart/form-data
  with the images as repeated ``image[]`` file parts (or one ``image`` part, as the SDK sends a single
  file), up to 16, an optional ``mask`` file, and text fields (``n`` as text). Both answer
  ``{created, data: [{b64_json, revised_prompt?}], background, output_format, quality, size, usage}``
  where `usage` is ``{input_tokens, input_tokens_details: {image_tokens, text_tokens}, output_tokens,
  output_tokens_details: {image_tokens, text_tokens}, total_tokens}``. The images are real one-colour
  Pillow pictures of the requested ``size`` (``auto`` or none: 1024x1024) in the requested
  ``output_format`` (default png), a new colour for each image.
- Requests are checked as the real API checks them, with its 400 bodies (``invalid_request_error``,
  ``param``, ``code``): an unknown field (``unknown_parameter``), a missing ``prompt``, ``n`` outside
  1..10, a ``size``/``quality``/``output_format``/``background``/``moderation``/``input_fidelity``
  value it does not offer (``invalid_value``), ``response_format`` sent to a gpt-image model (it always
  answers base64), ``input_fidelity`` sent to ``gpt-image-1-mini``, ``moderation`` sent to edits, an
  edit without images, with more than 16, or with a part that is not a PNG/JPEG/WebP, and an edit that
  is not multipart. A model not in `models` is a 404 ``model_not_found`` unless a reply is scripted.
- With `api_key` set, a wrong or missing Bearer key is a 401 (``invalid_api_key``) on every route.

Script with `ImagesReply` (a `Reply`): `images` (how many, default the request's ``n``; 0 sends an
empty ``data``), `size` (``(w, h)`` instead of the requested one), `image_format` (a Pillow format
instead of the requested one), `image_data` (sent verbatim as every ``b64_json``: text that is not
base64, or base64 of bytes that are not an image), `revised_prompt`, `usage` (``(text tokens, output
tokens per image)``, None omits it), `refused` (the 400 ``moderation_blocked`` refusal), `moderated`
(xAI only: that many images withheld with ``respect_moderation: false``). The `Reply` knobs work as
in every fake: `status` + `error_body` (None renders OpenAI's default body for the status), `raw`,
`headers` (e.g. ``retry-after``), `delay` (ends early once the client hangs up) and `drop_after`
(half the body, then the connection is cut).

`generation_bodies()` is the JSON of every generations request; `edits` records every edit the fake
accepted for parsing (`EditCall`: field names in order, text values, image field name and bytes,
mask bytes).
"""

from __future__ import annotations

import base64
import itertools
import time
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mmstudio.providers.media.base import sniff_image_type
from tests.fakes.base import Reply
from tests.fakes.images import make_image
from tests.fakes.openai_server import FakeOpenAIServer

IMAGE_MODELS = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-3", "dall-e-2"]
DEFAULT_MODELS = [*IMAGE_MODELS, "gpt-4o", "text-embedding-3-small"]
SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
_DALLE_SIZES = ("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792")
_CHOICES: dict[str, tuple[str, ...]] = {
    "quality": ("auto", "low", "medium", "high", "standard", "hd"),
    "output_format": ("png", "jpeg", "webp"),
    "background": ("auto", "transparent", "opaque"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("high", "low"),
    "response_format": ("url", "b64_json"),
}
_COMMON_FIELDS = frozenset(
    {"model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression"}
    | {"stream", "partial_images", "response_format", "user"}
)
_GENERATION_FIELDS = _COMMON_FIELDS | {"moderation", "style"}
_EDIT_FIELDS = _COMMON_FIELDS | {"image", "image[]", "mask", "input_fidelity"}
_NO_FIDELITY = frozenset({"gpt-image-1-mini"})
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
REFUSAL_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your request may contain content "
    "that is not allowed by our safety system."
)
_MAX_IMAGES = 16


@dataclass
class ImagesReply(Reply):
    """A `Reply` with the image knobs described in the module docstring."""

    usage: tuple[int, int] | None = (20, 272)
    images: int | None = None
    size: tuple[int, int] | None = None
    image_format: str | None = None
    image_data: str | None = None
    revised_prompt: str | None = None
    refused: bool = False
    moderated: int = 0


@dataclass
class EditCall:
    """One accepted ``/v1/images/edits`` request, as the multipart parser saw it."""

    fields: list[str]  # every part's name, in the order sent
    values: dict[str, str]  # the text parts
    image_field: str  # ``image[]`` or ``image``
    images: list[bytes]
    mask: bytes | None
    filenames: list[str] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


class Invalid(Exception):
    """A request the real API refuses with 400; `param` and `code` go into the error body."""

    def __init__(
        self, message: str, param: str | None = None, code: str | None = "invalid_value", status: int = 400
    ) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status


def _quoted(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


class FakeOpenAIImagesServer(FakeOpenAIServer):
    """OpenAI's Images API on top of the chat fake (module docstring)."""

    name = "openai-images"
    default_model = "dall-e-2"  # what the API uses when a request names none

    def __init__(
        self,
        default: Reply | None = None,
        *,
        models: list[str] | None = None,
        api_key: str | None = None,
        flavor: str = "openai",
    ) -> None:
        super().__init__(
            default or ImagesReply(),
            flavor=flavor,
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
        )
        self.edits: list[EditCall] = []
        self._colors = itertools.count()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits_route, methods=["POST"]),
            *super().routes(),
        ]

    def reset(self) -> None:
        super().reset()
        self.edits.clear()

    def generation_bodies(self) -> list[Any]:
        return [r.json() for r in self.requests_to("/v1/images/generations")]

    # -- errors ----------------------------------------------------------------------------------

    def invalid(self, exc: Invalid) -> Response:
        body = {"error": {"message": str(exc), "type": "invalid_request_error", "param": exc.param}}
        body["error"]["code"] = exc.code
        return JSONResponse(body, status_code=exc.status, headers=self._headers())

    def refusal_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": REFUSAL_MESSAGE,
                "type": "image_generation_user_error",
                "param": None,
                "code": "moderation_blocked",
            }
        }

    # -- routes ----------------------------------------------------------------------------------

    async def generations(self, request: Request) -> Response:
        rec = await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        try:
            body = rec.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.invalid(Invalid("We could not parse the JSON body of your request.", code=None))
        try:
            self.check(body, _GENERATION_FIELDS, edit=False)
        except Invalid as exc:
            return self.invalid(exc)
        return await self.answer(request, body, references=0)

    async def edits_route(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return self.invalid(
                Invalid(
                    "Invalid Content-Type header (application/json), expected multipart/form-data.",
                    code="invalid_content_type",
                )
            )
        try:
            call = await self.parse_edit(request)
            self.check(dict(call.values), _EDIT_FIELDS, edit=True, names=call.fields)
            self.check_edit_images(call)
        except Invalid as exc:
            return self.invalid(exc)
        self.edits.append(call)
        return await self.answer(request, dict(call.values), references=len(call.images))

    async def parse_edit(self, request: Request) -> EditCall:
        """The multipart body as the real server's parser would see it."""
        fields: list[str] = []
        values: dict[str, str] = {}
        images: list[bytes] = []
        filenames: list[str] = []
        types: list[str] = []
        image_field = ""
        mask: bytes | None = None
        async with request.form(max_files=64) as form:
            for name, value in form.multi_items():
                fields.append(name)
                if isinstance(value, UploadFile):
                    data = await value.read()
                    if name in ("image", "image[]"):
                        image_field = image_field or name
                        images.append(data)
                        filenames.append(value.filename or "")
                        types.append(value.content_type or "")
                    elif name == "mask":
                        mask = data
                    else:
                        raise Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
                else:
                    values[name] = value
        return EditCall(fields, values, image_field, images, mask, filenames, types)

    def check(self, body: dict[str, Any], allowed: frozenset[str], *, edit: bool, names: Any = None) -> None:
        for name in names if names is not None else body:
            if name not in allowed:
                raise Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        if not body.get("prompt"):
            raise Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = str(body.get("model") or self.default_model)
        gpt_image = model.startswith("gpt-image")
        try:
            n = int(body.get("n", 1))
        except (TypeError, ValueError):
            raise Invalid(f"Invalid type for 'n': expected an integer, but got {body['n']!r}.", "n") from None
        if not 1 <= n <= 10:
            raise Invalid(f"Invalid 'n': integer {n} is out of range (1 to 10).", "n")
        size = body.get("size")
        sizes = SIZES if gpt_image else _DALLE_SIZES
        if size is not None and size not in sizes:
            raise Invalid(f"Invalid value: '{size}'. Supported values are: {_quoted(sizes)}.", "size")
        for name, choices in _CHOICES.items():
            value = body.get(name)
            if value is not None and value not in choices:
                raise Invalid(f"Invalid value: '{value}'. Supported values are: {_quoted(choices)}.", name)
        if gpt_image and "response_format" in body:
            raise Invalid("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
        if "input_fidelity" in body and model in _NO_FIDELITY:
            raise Invalid(
                f"The 'input_fidelity' parameter is not supported for model '{model}'.",
                "input_fidelity",
                "unsupported_parameter",
            )
        if edit and "moderation" in body:
            raise Invalid("Unknown parameter: 'moderation'.", "moderation", "unknown_parameter")

    @staticmethod
    def check_edit_images(call: EditCall) -> None:
        if not call.images:
            raise Invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        if len(call.images) > _MAX_IMAGES:
            raise Invalid(
                f"Invalid 'image': too many images ({len(call.images)}); at most {_MAX_IMAGES}.", "image"
            )
        for data in [*call.images, *([call.mask] if call.mask is not None else [])]:
            if sniff_image_type(data) not in ("image/png", "image/jpeg", "image/webp"):
                raise Invalid(
                    "Invalid image file or mode for image, please check your image file.",
                    "image",
                    "invalid_image_file",
                )

    async def answer(self, request: Request, body: dict[str, Any], references: int) -> Response:
        """The scripted reply to a request that passed the checks."""
        model = str(body.get("model") or self.default_model)
        with self._lock:
            scripted = bool(self._script)
        if not scripted and model not in self.models:
            return JSONResponse(self._model_missing(model), status_code=404, headers=self._headers())
        reply = self.next_reply()
        reply = replace(reply, headers=self._headers(reply.headers))
        await self._pause_unless_gone(request, reply.delay)
        knobs = reply if isinstance(reply, ImagesReply) else ImagesReply(status=reply.status)
        if reply.raw is not None:
            return self.json_response(None, reply)
        if knobs.refused:
            return self.json_response(self.refusal_body(), replace(reply, status=400))
        if reply.status >= 400 or reply.error_body is not None:
            return self.json_response(reply.error_body or self.error_payload(reply.status), reply)
        return self.json_response(self.render(knobs, body, references), reply)

    # -- rendering -------------------------------------------------------------------------------

    def dimensions(self, knobs: ImagesReply, body: dict[str, Any]) -> tuple[int, int]:
        if knobs.size is not None:
            return knobs.size
        size = str(body.get("size") or "auto")
        if "x" not in size:
            return 1024, 1024
        width, _, height = size.partition("x")
        return int(width), int(height)

    def image_b64(self, knobs: ImagesReply, fmt: str, size: tuple[int, int]) -> str:
        if knobs.image_data is not None:
            return knobs.image_data
        index = next(self._colors)
        color = ((index * 67) % 256, (80 + index * 101) % 256, (160 + index * 37) % 256)
        return base64.b64encode(make_image(*size, fmt, color)).decode("ascii")

    def render(self, knobs: ImagesReply, body: dict[str, Any], references: int) -> dict[str, Any]:
        count = knobs.images if knobs.images is not None else int(body.get("n", 1))
        output_format = str(body.get("output_format") or "png")
        fmt = knobs.image_format or _PIL_FORMATS.get(output_format, "PNG")
        width, height = self.dimensions(knobs, body)
        data: list[dict[str, Any]] = []
        for _ in range(count):
            item: dict[str, Any] = {"b64_json": self.image_b64(knobs, fmt, (width, height))}
            if knobs.revised_prompt is not None:
                item["revised_prompt"] = knobs.revised_prompt
            data.append(item)
        response: dict[str, Any] = {
            "created": int(time.time()),
            "data": data,
            "background": "opaque" if body.get("background") != "transparent" else "transparent",
            "output_format": output_format,
            "quality": body.get("quality") if body.get("quality") not in (None, "auto") else "medium",
            "size": f"{width}x{height}",
        }
        if knobs.usage is not None:
            text_tokens, per_image = knobs.usage
            image_in = 323 * references  # what a reference image costs at input fidelity low
            output = per_image * count
            response["usage"] = {
                "input_tokens": text_tokens + image_in,
                "input_tokens_details": {"image_tokens": image_in, "text_tokens": text_tokens},
                "output_tokens": output,
                "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
                "total_tokens": text_tokens + image_in + output,
            }
        return response
