"""AUTOMATIC1111 / Forge / SD.Next image adapter (``--api``): txt2img, img2img, progress polling, interrupt.

The three WebUIs share the ``/sdapi/v1`` API. A generation is one long synchronous POST (``txt2img``, or
``img2img`` when a reference is given); while it runs a concurrent task polls ``GET /sdapi/v1/progress``
and reports steps. Cancelling the awaiting task posts ``/sdapi/v1/interrupt`` before re-raising.

Quirks handled here, all of the upstream's making:

- ``info`` is a JSON *string* (a dict from some forks is accepted too); the seeds actually used are its
  ``all_seeds``.
- Extensions append images beyond the batch (ControlNet's detect maps), and a grid may come first
  (``info.index_of_first_image``): only the batch's own images are kept.
- Progress and interrupt are global to the server, not per request: with another client generating at
  the same time, the steps reported are that job's, and an interrupt stops whichever job is running.
- A mask with transparency follows the OpenAI convention (transparent = repaint); A1111 repaints where
  the alpha is *opaque*, so such a mask is turned into A1111's own black/white one (white = repaint).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, TypeGuard

import httpx

from mmstudio.errors import BadRequest, ProviderError, redact
from mmstudio.providers._http import HTTPAdapter, error_for_status, parse_retry_after, raise_protocol
from mmstudio.providers.base import ProbeResult, RemoteModel
from mmstudio.providers.media.base import (
    GeneratedImage,
    ImageCapabilities,
    ImageProgress,
    ImageRequest,
    ImageResult,
    InputImage,
    ProgressCallback,
    decode_image_b64,
)

A1111_CAPABILITIES = ImageCapabilities(
    supports_references=True,
    supports_edit=True,
    supports_mask=True,
    supports_negative_prompt=True,
    supports_seed=True,
    supports_steps=True,
    sizes=(),
    max_n=8,
    max_references=1,
    output_formats=("png",),
    key_env=None,
)

MIN_SIDE, MAX_SIDE, SIDE_STEP = 64, 2048, 8
# Model names that mean "whatever checkpoint the WebUI has loaded": no override is sent for them.
CURRENT_CHECKPOINT_NAMES = frozenset({"", "default", "current"})
DEFAULT_DENOISING_STRENGTH = 0.75
TXT2IMG, IMG2IMG = "sdapi/v1/txt2img", "sdapi/v1/img2img"
_SHORT = httpx.Timeout(5.0, connect=2.0)  # progress polls and the interrupt: small answers, at once


def snap_size(width: int, height: int) -> tuple[int, int]:
    """The nearest size the WebUI accepts: each side a multiple of 8, from 64 to 2048."""

    def snap(side: int) -> int:
        return min(MAX_SIDE, max(MIN_SIDE, (side + SIDE_STEP // 2) // SIDE_STEP * SIDE_STEP))

    return snap(width), snap(height)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from an image's header (Pillow reads no pixels for this)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError):
        return None


def a1111_mask(mask: InputImage) -> bytes:
    """The mask as A1111 reads it (white = repaint). A mask with transparent pixels is the OpenAI kind
    (transparent = repaint): A1111 would repaint its *opaque* part, so it is inverted into black/white."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(mask.data)) as image:
            if "A" not in image.getbands():
                return mask.data
            alpha = image.getchannel("A")
            low, _high = alpha.getextrema()
            if low == 255:  # fully opaque: A1111 ignores the alpha and reads the colours as given
                return mask.data
            converted: Image.Image = alpha.point(lambda a: 255 if a < 128 else 0).convert("L")
    except (OSError, ValueError):
        return mask.data  # not an image Pillow reads: let the WebUI say what is wrong with it
    out = io.BytesIO()
    converted.save(out, format="PNG")
    return out.getvalue()


def _parse_info(raw: object) -> dict[str, Any]:
    """`info` is a JSON string in A1111 and Forge; tolerate a dict, and anything unreadable as {}."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw:
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                return parsed
    return {}


def _progress_of(data: object) -> ImageProgress | None:
    """A ``/progress`` answer as our progress, or None while nothing of ours is running."""
    if not isinstance(data, dict):
        return None
    state = data.get("state")
    if not isinstance(state, dict):
        state = {}
    if state.get("job_count") == 0:  # idle (or not started yet): A1111 then reports progress 0
        return None
    fraction = data.get("progress")
    step, steps = state.get("sampling_step"), state.get("sampling_steps")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        fraction = 0.0
    if fraction <= 0 and not step:
        return None
    return ImageProgress(
        step=step if _is_int(step) else None,
        steps=steps if _is_int(steps) and steps > 0 else None,
        percent=round(min(max(float(fraction), 0.0), 1.0) * 100.0, 1),
    )


def _error_text(body: bytes) -> str:
    """A readable message from FastAPI's ``{"detail": ...}`` (422: a list of field errors) or the WebUI's
    own ``{"error", "detail", "body", "errors"}`` for everything its handler catches."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:500] or "(no body)"
    if not isinstance(payload, dict):
        return str(payload)[:500]
    detail = payload.get("detail")
    if isinstance(detail, list):
        fields = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or () if p != "body")
                fields.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg")))
        return "; ".join(fields) or json.dumps(detail)[:500]
    error, errors = payload.get("error"), payload.get("errors")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(errors, str) and errors:
        # An exception the WebUI caught (an out-of-memory error, a failed checkpoint load): name it.
        named = isinstance(error, str) and error and error != "HTTPException"
        return f"{error}: {errors}" if named else errors
    if isinstance(error, str) and error:
        return error
    return json.dumps(payload)[:500]


class Automatic1111Adapter(HTTPAdapter):
    """An AUTOMATIC1111, Forge or SD.Next WebUI started with ``--api`` (default ``http://127.0.0.1:7860``).

    No auth by default; a WebUI started with ``--api-auth user:pass`` takes HTTP Basic, sent when
    `config.api_key` is ``user:pass`` (a key without a colon goes as a Bearer token, for a proxy in
    front). `progress_interval` is the seconds between progress polls.
    """

    protocol: ClassVar[str] = "automatic1111"
    capabilities: ClassVar[ImageCapabilities] = A1111_CAPABILITIES
    progress_interval: float = 0.5

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        key = self.config.api_key
        if key:
            headers["Authorization"] = f"Basic {_b64(key.encode())}" if ":" in key else f"Bearer {key}"
        headers.update(self.config.headers)
        return headers

    @property
    def _label(self) -> str:
        return self.config.provider or "automatic1111"

    @property
    def _secrets(self) -> tuple[str | None, ...]:
        key = self.config.api_key
        if not key:
            return ()
        return (key, key.partition(":")[2] or None, _b64(key.encode()))

    def error_from_response(
        self, status: int, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> ProviderError:
        text = redact(_error_text(body), self._secrets)
        if status == 404:
            if text == "Not Found":  # FastAPI's own: no such route, so no API
                text += " (no /sdapi route here: is the WebUI started with --api?)"
            if "model" not in text.lower():
                # "Sampler not found", "Script 'x' not found": the request is wrong, not the model.
                return BadRequest(
                    f"{self._label} returned HTTP 404: {text}",
                    provider=self.config.provider,
                    model=model,
                    status=404,
                )
        return error_for_status(
            status, text, config=self.config, model=model, retry_after=parse_retry_after(headers)
        )

    # -- generation ----------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: ProgressCallback | None = None) -> ImageResult:
        path, body = await self.build_body(request)
        watcher = asyncio.create_task(self._watch(progress)) if progress is not None else None
        try:
            data = await self.request_json("POST", path, model=request.model, json_body=body)
        except asyncio.CancelledError:
            await self._interrupt()
            raise
        finally:
            if watcher is not None:
                await _stop(watcher)
        batch = body.get("batch_size")
        # Decoding megabytes of base64 takes milliseconds: in a worker thread, never on the event loop.
        return await asyncio.to_thread(
            self._result, data, batch if _is_int(batch) and batch > 0 else 1, request.model
        )

    async def build_body(self, request: ImageRequest) -> tuple[str, dict[str, Any]]:
        """The path (txt2img, or img2img with a reference) and its body; `extra` passes through last
        (``cfg_scale``, ``sampler_name``, ``scheduler``, ``denoising_strength``, ``alwayson_scripts``...)."""
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or "",
            "seed": -1 if request.seed is None else request.seed,
            "batch_size": max(1, request.n),
            "n_iter": 1,
        }
        if request.steps is not None:
            body["steps"] = request.steps
        size = request.width_height
        if size is None and request.references:
            # Without a size the WebUI works at 512x512 and would squash the image to edit.
            size = await asyncio.to_thread(_image_size, request.references[0].data)
        if size is not None:
            body["width"], body["height"] = snap_size(*size)
        if request.model.strip().lower() not in CURRENT_CHECKPOINT_NAMES:
            body["override_settings"] = {"sd_model_checkpoint": request.model}
        path = TXT2IMG
        if request.references:
            path = IMG2IMG
            body["init_images"] = [_b64(request.references[0].data)]
            body["denoising_strength"] = DEFAULT_DENOISING_STRENGTH
            if request.mask is not None:
                body["mask"] = _b64(await asyncio.to_thread(a1111_mask, request.mask))
        extra = dict(request.extra)
        overrides = extra.pop("override_settings", None)
        if isinstance(overrides, Mapping):
            body["override_settings"] = {**body.get("override_settings", {}), **overrides}
        body.update(extra)
        return path, body

    def _result(self, data: Any, batch_size: int, model: str) -> ImageResult:
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise_protocol(self.config, "sent a response without an images list", model)
        images: list[Any] = data["images"]
        info = _parse_info(data.get("info"))
        first = info.get("index_of_first_image")
        first = first if _is_int(first) and 0 <= first < len(images) else 0
        kept = images[first : first + batch_size]  # a grid before, detect maps after: not ours
        if not kept:
            raise_protocol(self.config, "sent no images", model)
        seeds = info.get("all_seeds")
        seeds = seeds if isinstance(seeds, list) else []
        out: list[GeneratedImage] = []
        for index, raw in enumerate(kept):
            image = decode_image_b64(raw, provider=self._label, model=model)
            seed = seeds[index] if index < len(seeds) else (info.get("seed") if index == 0 else None)
            out.append(replace(image, seed=seed if _is_int(seed) else None))
        return ImageResult(images=tuple(out), info=info)

    async def _watch(self, progress: ProgressCallback) -> None:
        """Poll progress until cancelled, reporting each change. A failed poll is skipped: progress is
        a courtesy, and the generation call itself reports any real failure."""
        last: ImageProgress | None = None
        while True:
            await asyncio.sleep(self.progress_interval)
            try:
                data = await self.request_json(
                    "GET", "sdapi/v1/progress", params={"skip_current_image": "true"}, timeout=_SHORT
                )
            except ProviderError:
                continue
            update = _progress_of(data)
            if update is not None and update != last:
                last = update
                await progress(update)

    async def _interrupt(self) -> None:
        with contextlib.suppress(ProviderError):  # best effort: the caller is already gone
            await self.request_json("POST", "sdapi/v1/interrupt", timeout=_SHORT)

    # -- models and health ---------------------------------------------------------------------

    async def list_models(self) -> list[RemoteModel]:
        """The checkpoints (``/sdapi/v1/sd-models``), by title: what ``sd_model_checkpoint`` takes."""
        data = await self.request_json("GET", "sdapi/v1/sd-models")
        if not isinstance(data, list):
            raise_protocol(self.config, "sent a checkpoint list that is not a list")
        models: list[RemoteModel] = []
        for item in data:
            if not isinstance(item, dict):
                continue
            name = item.get("title") or item.get("model_name")
            if isinstance(name, str) and name:
                details = {
                    k: item[k]
                    for k in ("model_name", "hash", "sha256", "filename", "config")
                    if item.get(k) is not None
                }
                models.append(RemoteModel(id=name, details=details))
        return models

    async def probe(self) -> ProbeResult:
        # /sdapi/v1/sd-models answers on A1111, Forge and SD.Next alike, and only with --api.
        return await self.timed_probe("sdapi/v1/sd-models")


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel the progress task and wait for it; a callback's own exception surfaces here."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # our caller is being cancelled too: do not swallow that
