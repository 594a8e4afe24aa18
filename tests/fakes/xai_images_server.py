"""A fake xAI Images API (``/v1/images/generations``, ``/v1/images/edits``, both JSON; ``/v1/models``).

Usage::

    with FakeXAIImagesServer(api_key="xai-test") as server:
        config = EndpointConfig(base_url=f"{server.url}/v1", api_key="xai-test", provider="xai")
        server.script(ImagesReply(images=1, revised_prompt="A red fox standing in snow"))
        ...
        (body,) = server.edit_bodies()

It is `FakeOpenAIImagesServer` in the ``xai`` flavor (the key check with xAI's HTTP 400 "Incorrect API
key provided", ``/v1/models`` owned by ``xai``, errors as ``{"code": "<description>", "error":
"<message>"}``), answering the way xAI's docs describe its Images API:

- Generations take ``{model, prompt, n (1..10), response_format (url | b64_json, default url),
  aspect_ratio?, resolution? (1k | 2k), quality?, user?}``. There is no ``size``: sending one is
  a 400 "Argument not supported: size"; any other unknown field is xAI's 422 "Failed to deserialize
  the JSON body". An ``aspect_ratio``, ``resolution`` or ``response_format`` it does not offer is a 400.
- Edits are JSON (multipart is a 415), with the same fields plus exactly one of ``image: {url}`` and
  ``images: [{url}, ...]`` (at most 3); a URL is an ``https://`` link (not fetched) or a ``data:image/...;
  base64,`` URI that must hold a real image. Without an ``aspect_ratio`` the output follows the first
  input image's shape.
- Answers are ``{"data": [{"b64_json" | "url", "mime_type": "image/jpeg", "revised_prompt"?,
  "respect_moderation": true}]}``: real one-colour Pillow JPEGs (`image_format` changes that), the long
  side 96 pixels at 1k and 192 at 2k, in the ratio asked for (1:1 when none). Asked for ``url``, the
  fake answers links on ``imgen.x.ai`` that it does not serve (an adapter must ask for base64).

Script with `ImagesReply` (see `tests.fakes.openai_images_server`): `images`, `size`, `image_format`,
`image_data`, `revised_prompt`, `refused` (a 400 "Generated image rejected by content moderation."),
`moderated` (that many images withheld: ``respect_moderation: false`` and an empty ``b64_json``), and
the `Reply` knobs `status` + `error_body` (None renders xAI's default body), `raw`, `headers`, `delay`,
`drop_after`. `usage` is ignored: xAI's image answers carry none.

`generation_bodies()` / `edit_bodies()` return the JSON of every generations / edits request.
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.base import Reply
from tests.fakes.openai_images_server import FakeOpenAIImagesServer, ImagesReply, Invalid

IMAGE_MODELS = ["grok-imagine-image", "grok-2-image-1212"]
DEFAULT_MODELS = [*IMAGE_MODELS, "grok-imagine-video", "grok-4"]
ASPECT_RATIOS = (
    "1:1",
    "3:4",
    "4:3",
    "9:16",
    "16:9",
    "2:3",
    "3:2",
    "9:19.5",
    "19.5:9",
    "9:20",
    "20:9",
    "1:2",
    "2:1",
    "auto",
)
_LONG_SIDE = {"1k": 96, "2k": 192}
_GENERATION_FIELDS = frozenset(
    {"model", "prompt", "n", "response_format", "aspect_ratio", "resolution", "quality", "user"}
)
_EDIT_FIELDS = _GENERATION_FIELDS | {"image", "images", "mask"}
_INVALID = "Client specified an invalid argument"
REFUSAL_MESSAGE = "Generated image rejected by content moderation."
_MAX_SOURCES = 3


def _ratio_size(ratio: str, long_side: int) -> tuple[int, int]:
    width_part, _, height_part = ratio.partition(":")
    width, height = float(width_part), float(height_part)
    if width >= height:
        return long_side, max(1, round(long_side * height / width))
    return max(1, round(long_side * width / height)), long_side


class FakeXAIImagesServer(FakeOpenAIImagesServer):
    """xAI's Images API (module docstring)."""

    name = "xai-images"
    default_model = "grok-imagine-image"

    def __init__(
        self, default: Reply | None = None, *, models: list[str] | None = None, api_key: str | None = None
    ) -> None:
        super().__init__(
            default or ImagesReply(),
            models=list(models) if models is not None else list(DEFAULT_MODELS),
            api_key=api_key,
            flavor="xai",
        )

    def edit_bodies(self) -> list[Any]:
        return [r.json() for r in self.requests_to("/v1/images/edits")]

    # -- errors ----------------------------------------------------------------------------------

    def invalid(self, exc: Invalid) -> Response:
        return self.json_response({"code": _INVALID, "error": str(exc)}, Reply(status=exc.status))

    def refusal_body(self) -> dict[str, Any]:
        return {"code": _INVALID, "error": REFUSAL_MESSAGE}

    # -- routes ----------------------------------------------------------------------------------

    async def generations(self, request: Request) -> Response:
        return await self._handle(request, edit=False)

    async def edits_route(self, request: Request) -> Response:
        return await self._handle(request, edit=True)

    async def _handle(self, request: Request, *, edit: bool) -> Response:
        rec = await self.record(request)
        if (refused := self._refuse_key(request)) is not None:
            return refused
        try:
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise Invalid("Expected request with `Content-Type: application/json`", status=415, code=None)
            try:
                body = rec.json()
            except ValueError:
                raise Invalid("Failed to parse the request body as JSON", status=400) from None
            if not isinstance(body, dict):
                raise Invalid("Failed to deserialize the JSON body into the target type", status=422)
            first = self.check_xai(body, edit=edit)
        except Invalid as exc:
            return self.invalid(exc)
        if first is not None:
            body = {**body, "_first_size": first}
        return await self.answer(request, body, references=0)

    def check_xai(self, body: dict[str, Any], *, edit: bool) -> tuple[int, int] | None:
        """Check `body`; for an edit, return the first source image's size (None for a link)."""
        if "size" in body:
            raise Invalid("Argument not supported: size")
        allowed = _EDIT_FIELDS if edit else _GENERATION_FIELDS
        for name in body:
            if name not in allowed:
                raise Invalid(
                    f"Failed to deserialize the JSON body into the target type: unknown field `{name}`",
                    status=422,
                )
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            raise Invalid("prompt must not be empty")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise Invalid(f"n must be between 1 and 10, got {n}")
        for name, choices in (
            ("aspect_ratio", ASPECT_RATIOS),
            ("resolution", tuple(_LONG_SIDE)),
            ("response_format", ("url", "b64_json")),
        ):
            value = body.get(name)
            if value is not None and value not in choices:
                raise Invalid(f"Invalid {name} '{value}'. Supported: {', '.join(choices)}")
        if not edit:
            return None
        if ("image" in body) == ("images" in body):
            raise Invalid("Exactly one of `image` and `images` must be provided")
        sources = [body["image"]] if "image" in body else body["images"]
        if not isinstance(sources, list) or not sources or len(sources) > _MAX_SOURCES:
            raise Invalid(f"`images` must hold 1 to {_MAX_SOURCES} images")
        sizes = [self._source_size(source) for source in sources]
        return sizes[0]

    @staticmethod
    def _source_size(source: Any) -> tuple[int, int] | None:
        url = source.get("url") if isinstance(source, dict) else None
        if not isinstance(url, str) or not url:
            raise Invalid("Each image needs a non-empty `url`")
        if url.startswith("https://"):
            return None
        head, _, data = url.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64")):
            raise Invalid("Image url must be an https URL or a base64 data URI")
        try:
            with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as picture:
                size: tuple[int, int] = picture.size
        except (binascii.Error, ValueError, OSError):
            raise Invalid("Invalid image: the data URI does not hold a decodable image") from None
        return size

    # -- rendering -------------------------------------------------------------------------------

    def dimensions(self, knobs: ImagesReply, body: dict[str, Any]) -> tuple[int, int]:
        if knobs.size is not None:
            return knobs.size
        long_side = _LONG_SIDE.get(str(body.get("resolution") or "1k"), 96)
        ratio = body.get("aspect_ratio")
        first = body.get("_first_size")
        if (ratio is None or ratio == "auto") and first is not None:
            ratio = f"{first[0]}:{first[1]}"
        return _ratio_size(ratio if ratio and ratio != "auto" else "1:1", long_side)

    def render(self, knobs: ImagesReply, body: dict[str, Any], references: int) -> dict[str, Any]:
        count = knobs.images if knobs.images is not None else int(body.get("n", 1))
        fmt = knobs.image_format or "JPEG"
        size = self.dimensions(knobs, body)
        as_url = body.get("response_format", "url") == "url"
        data: list[dict[str, Any]] = []
        for index in range(count):
            item: dict[str, Any]
            if index < knobs.moderated:
                item = {"b64_json": "", "respect_moderation": False}
            elif as_url:
                item = {"url": f"https://imgen.x.ai/xai-imgen/xai-tmp-imgen-{uuid.uuid4()}.jpeg"}
            else:
                item = {"b64_json": self.image_b64(knobs, fmt, size)}
            if index >= knobs.moderated:
                item["respect_moderation"] = True
            item["mime_type"] = f"image/{fmt.lower()}"
            if knobs.revised_prompt is not None:
                item["revised_prompt"] = knobs.revised_prompt
            data.append(item)
        return {"data": data}
