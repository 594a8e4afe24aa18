"""A fake AUTOMATIC1111 / Forge WebUI API (``--api``): txt2img, img2img, progress, interrupt, models, options.

Usage::

    with FakeA1111Server(models=["v1-5-pruned-emaonly.safetensors"]) as server:
        config = EndpointConfig(base_url=server.url, provider="automatic1111")
        server.script(A1111Reply(extra_images=2))      # next generation: two ControlNet maps appended

Faithful to ``modules/api/api.py`` and ``models.py`` of the WebUI:

- ``POST /sdapi/v1/txt2img`` and ``/img2img`` answer ``{images: [b64 PNG], parameters: <the request with
  defaults>, info: "<JSON string>"}``; the PNGs are real (Pillow), at the requested width x height
  (default 512), ``batch_size`` x ``n_iter`` of them. ``info`` carries ``seed``, ``all_seeds`` (seed -1
  becomes `A1111Reply.seed`, then one more per image), ``steps``, ``sampler_name``, ``sd_model_name``,
  ``index_of_first_image`` and the rest of ``Processed.js()``. img2img needs ``init_images`` (404
  ``Init image not found``) that decode as images (500 ``Invalid encoded image``), as does ``mask``.
- Validation failures are FastAPI's 422 ``{"detail": [{"loc": ["body", field], "msg", "type"}]}``
  (pydantic 1, as the WebUI pins); everything else the WebUI's ``handle_exception`` shape
  ``{"error": <exception class>, "detail", "body", "errors": str(exc)}``; an unknown route is FastAPI's
  404 ``{"detail": "Not Found"}``.
- ``GET /sdapi/v1/progress`` → ``{progress, eta_relative, state: {job, job_count, job_no, sampling_step,
  sampling_steps, interrupted, ...}, current_image, textinfo}``; ``progress`` is 0 while idle
  (``job_count`` 0), else ``0.01 + step/steps`` as the WebUI computes it. ``current_image`` is a small
  PNG unless ``skip_current_image=true``.
- ``POST /sdapi/v1/interrupt`` → ``{}``; it ends a held generation, which then answers normally.
- ``GET /sdapi/v1/sd-models`` → ``[{title: "<file> [<hash10>]", model_name, hash, sha256, filename,
  config}]``; ``GET /sdapi/v1/options`` → the settings (``sd_model_checkpoint`` is the first title).
- With `api_auth` ``"user:pass"`` (``--api-auth``) every route wants HTTP Basic: 401 with
  ``WWW-Authenticate: Basic`` and ``detail`` ``Not authenticated`` or ``Incorrect username or password``.

Holding a generation, without sleeping in the test: ``server.hold()`` makes the next generation wait
until ``server.release()`` (or an interrupt); while it is held, each ``/progress`` poll advances
``sampling_step`` by one (up to ``steps``), so a test sees every step reported in order and can
cancel at a known step.

Scripted `A1111Reply` (generation routes only): `status` + `error_body` (None renders the default body
for the status: see `validation_error` and `exception_body`), `raw`, `headers`, `delay`,
`drop_after` (half the body, then the connection is cut), `extra_images` (detect maps appended after
the batch), `grid` (a grid image first, ``index_of_first_image`` 1), `bad_image` (the first image is
not base64), `info_as_object` (``info`` as a dict, not a string), `seed` (used for seed -1).
`models_reply` (a `Reply`) replaces the ``/sd-models`` answer (errors, delays); `progress_failures`
makes that many next ``/progress`` polls answer 500 (they do not advance a held generation).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply
from tests.fakes.images import make_b64

_PALETTE = [(200, 80, 40), (40, 120, 200), (60, 170, 90), (220, 190, 50), (140, 60, 170), (90, 90, 90)]
_DETECT_MAP = (0, 0, 0)
_GRID = (255, 255, 255)
_INTEGER_FIELDS = ("width", "height", "steps", "batch_size", "n_iter", "seed")
_NUMBER_FIELDS = ("cfg_scale", "denoising_strength")
_DEFAULTS: dict[str, Any] = {
    "prompt": "",
    "negative_prompt": "",
    "styles": None,
    "seed": -1,
    "subseed": -1,
    "subseed_strength": 0,
    "sampler_name": "Euler a",
    "scheduler": None,
    "batch_size": 1,
    "n_iter": 1,
    "steps": 20,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 512,
    "restore_faces": None,
    "tiling": None,
    "override_settings": None,
    "override_settings_restore_afterwards": True,
    "send_images": True,
    "save_images": False,
    "alwayson_scripts": {},
}
_IMG2IMG_DEFAULTS: dict[str, Any] = {
    "init_images": None,
    "mask": None,
    "denoising_strength": 0.75,
    "mask_blur": 4,
    "inpainting_fill": 0,
    "inpaint_full_res": True,
    "include_init_images": False,
}


@dataclass
class A1111Reply(Reply):
    """A scripted generation answer (see the module docstring)."""

    extra_images: int = 0
    grid: bool = False
    bad_image: bool = False
    info_as_object: bool = False
    seed: int = 1234567890


def validation_error(
    field: str, msg: str = "value is not a valid integer", kind: str = "type_error.integer"
) -> Any:
    """FastAPI's 422 body for one bad body field (pydantic 1 wording)."""
    return {"detail": [{"loc": ["body", field], "msg": msg, "type": kind}]}


def exception_body(error: str, errors: str, detail: str = "") -> dict[str, str]:
    """The WebUI's `handle_exception` body: the exception's class name, its detail and its text."""
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def _http_exception(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = exception_body("HTTPException", f"{status}: {detail}", detail)
    return JSONResponse(body, status_code=status, headers=headers)


def _default_error(status: int) -> Any:
    if status == 422:
        return validation_error("width")
    if status == 500:
        return exception_body(
            "OutOfMemoryError",
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total capacity)",
        )
    detail = {401: "Incorrect username or password", 404: "Not Found", 503: "Service Unavailable"}
    message = detail.get(status, "Error")
    return exception_body("HTTPException", f"{status}: {message}", message)


def _decodes_as_image(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith("data:image/"):
        value = value.split(";")[1].split(",")[1]
    try:
        with Image.open(io.BytesIO(base64.b64decode(value))) as image:
            image.load()
    except (binascii.Error, OSError, ValueError):
        return False
    return True


class FakeA1111Server(FakeServer):
    name = "a1111"

    def __init__(
        self,
        models: list[str] | None = None,
        *,
        api_auth: str | None = None,
        default: A1111Reply | None = None,
    ) -> None:
        super().__init__(default or A1111Reply())
        self.models = list(models if models is not None else ["v1-5-pruned-emaonly.safetensors"])
        self.api_auth = api_auth
        self.models_reply: Reply | None = None
        self.progress_failures = 0  # this many next /progress polls answer 500
        self._gate = threading.Event()  # set = generations run; cleared by hold()
        self._gate.set()
        self._interrupt = threading.Event()
        self._state_lock = threading.Lock()
        self._state: dict[str, Any] = self._idle_state()

    # -- scripting -----------------------------------------------------------------------------

    def hold(self) -> None:
        """Make generations wait until `release()` (or an interrupt); each progress poll is a step."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def reset(self) -> None:
        super().reset()
        self.release()
        self._interrupt.clear()
        self.models_reply = None
        self.progress_failures = 0
        with self._state_lock:
            self._state = self._idle_state()

    def title(self, filename: str) -> str:
        return f"{filename} [{self._sha(filename)[:10]}]"

    @property
    def titles(self) -> list[str]:
        return [self.title(m) for m in self.models]

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _sha(filename: str) -> str:
        return hashlib.sha256(filename.encode()).hexdigest()

    @staticmethod
    def _idle_state() -> dict[str, Any]:
        return {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": 0,
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }

    def _denied(self, request: Request) -> Response | None:
        if not self.api_auth:
            return None
        header = request.headers.get("authorization", "")
        challenge = {"WWW-Authenticate": "Basic"}
        if not header.lower().startswith("basic "):
            return _http_exception(401, "Not authenticated", challenge)
        try:
            given = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _http_exception(401, "Invalid authentication credentials", challenge)
        if given != self.api_auth:
            return _http_exception(401, "Incorrect username or password", challenge)
        return None

    def _reply(self) -> A1111Reply:
        reply = self.next_reply()
        return reply if isinstance(reply, A1111Reply) else A1111Reply(**vars(reply))

    def _checkpoint(self, body: dict[str, Any]) -> str:
        overrides = body.get("override_settings") or {}
        wanted = overrides.get("sd_model_checkpoint") if isinstance(overrides, dict) else None
        for filename in self.models:
            if wanted in (filename, self.title(filename), filename.rsplit(".", 1)[0]):
                return filename
        return self.models[0] if self.models else "none"

    @staticmethod
    def _invalid(body: dict[str, Any]) -> Response | None:
        errors = []
        for key in _INTEGER_FIELDS:
            value = body.get(key)
            if key in body and (not isinstance(value, int) or isinstance(value, bool)):
                errors.append(
                    {
                        "loc": ["body", key],
                        "msg": "value is not a valid integer",
                        "type": "type_error.integer",
                    }
                )
        for key in _NUMBER_FIELDS:
            value = body.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                errors.append(
                    {"loc": ["body", key], "msg": "value is not a valid float", "type": "type_error.float"}
                )
        if "prompt" in body and not isinstance(body["prompt"], str):
            errors.append({"loc": ["body", "prompt"], "msg": "str type expected", "type": "type_error.str"})
        return JSONResponse({"detail": errors}, status_code=422) if errors else None

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/sdapi/v1/txt2img", self._txt2img, methods=["POST"]),
            Route("/sdapi/v1/img2img", self._img2img, methods=["POST"]),
            Route("/sdapi/v1/progress", self._progress, methods=["GET"]),
            Route("/sdapi/v1/interrupt", self._interrupt_route, methods=["POST"]),
            Route("/sdapi/v1/sd-models", self._sd_models, methods=["GET"]),
            Route("/sdapi/v1/options", self._options, methods=["GET"]),
            Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    async def _not_found(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    async def _txt2img(self, request: Request) -> Response:
        return await self._generate(request, img2img=False)

    async def _img2img(self, request: Request) -> Response:
        return await self._generate(request, img2img=True)

    async def _generate(self, request: Request, *, img2img: bool) -> Response:
        rec = await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        reply = self._reply()
        await self.pause(reply.delay)
        if reply.status >= 400:
            payload = reply.error_body if reply.error_body is not None else _default_error(reply.status)
            return self.json_response(payload, reply)
        try:
            body = json.loads(rec.body)
        except ValueError:
            return JSONResponse(
                validation_error("__root__", "Expecting value", "value_error.jsondecode"), 422
            )
        if not isinstance(body, dict):
            return JSONResponse(
                validation_error("__root__", "value is not a valid dict", "type_error.dict"), 422
            )
        if (invalid := self._invalid(body)) is not None:
            return invalid
        if img2img:
            init_images = body.get("init_images")
            if not init_images:
                return _http_exception(404, "Init image not found")
            if not all(_decodes_as_image(i) for i in init_images) or (
                body.get("mask") and not _decodes_as_image(body["mask"])
            ):
                return _http_exception(500, "Invalid encoded image")
        params = {**_DEFAULTS, **(_IMG2IMG_DEFAULTS if img2img else {}), **body}
        await self._run(params, img2img)
        return self.json_response(self._answer(params, reply, img2img), reply)

    async def _run(self, params: dict[str, Any], img2img: bool) -> None:
        """The job as the WebUI's shared state shows it, held while the gate is closed."""
        with self._state_lock:
            self._state.update(
                job="scripts_img2img" if img2img else "scripts_txt2img",
                job_count=params["n_iter"],
                job_no=0,
                sampling_step=0,
                sampling_steps=params["steps"],
                interrupted=False,
                job_timestamp="20250101000000",
            )
        try:
            # Polled, not awaited in a thread: a thread blocked on the gate would outlive stop().
            while not self._gate.is_set() and not self._interrupt.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        finally:
            with self._state_lock:
                self._state = self._idle_state()

    def _answer(self, params: dict[str, Any], reply: A1111Reply, img2img: bool) -> dict[str, Any]:
        width, height = params["width"], params["height"]
        count = params["batch_size"] * params["n_iter"]
        seed = reply.seed if params["seed"] in (-1, None) else params["seed"]
        seeds = [seed + i for i in range(count)]
        images = [make_b64(width, height, "PNG", _PALETTE[i % len(_PALETTE)]) for i in range(count)]
        if reply.grid:
            images.insert(0, make_b64(width, height, "PNG", _GRID))
        images += [make_b64(width, height, "PNG", _DETECT_MAP) for _ in range(reply.extra_images)]
        if reply.bad_image:
            images[0] = "this is not base64!"
        checkpoint = self._checkpoint(params)
        prompt, negative = params["prompt"], params["negative_prompt"]
        infotexts = [
            f"{prompt}\nNegative prompt: {negative}\n"
            f"Steps: {params['steps']}, Sampler: {params['sampler_name']}, "
            f"CFG scale: {params['cfg_scale']}, Seed: {s}, Size: {width}x{height}, "
            f"Model hash: {self._sha(checkpoint)[:10]}, Model: {checkpoint.rsplit('.', 1)[0]}"
            for s in seeds
        ]
        info = {
            "prompt": prompt,
            "all_prompts": [prompt] * count,
            "negative_prompt": negative,
            "all_negative_prompts": [negative] * count,
            "seed": seed,
            "all_seeds": seeds,
            "subseed": seed + 1000,
            "all_subseeds": [seed + 1000 + i for i in range(count)],
            "subseed_strength": params["subseed_strength"],
            "width": width,
            "height": height,
            "sampler_name": params["sampler_name"],
            "cfg_scale": params["cfg_scale"],
            "steps": params["steps"],
            "batch_size": params["batch_size"],
            "restore_faces": False,
            "face_restoration_model": None,
            "sd_model_name": checkpoint.rsplit(".", 1)[0],
            "sd_model_hash": self._sha(checkpoint)[:10],
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": params.get("denoising_strength"),
            "extra_generation_params": {},
            "index_of_first_image": 1 if reply.grid else 0,
            "infotexts": infotexts,
            "styles": [],
            "job_timestamp": "20250101000000",
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": "v1.10.1",
        }
        parameters = dict(params)
        if img2img and not params.get("include_init_images"):
            parameters["init_images"] = None
            parameters["mask"] = None
        return {
            "images": images,
            "parameters": parameters,
            "info": info if reply.info_as_object else json.dumps(info),
        }

    async def _progress(self, request: Request) -> Response:
        await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        with self._state_lock:
            failing = self.progress_failures > 0
            self.progress_failures = max(0, self.progress_failures - 1)
        if failing:
            return JSONResponse(exception_body("RuntimeError", "scripted progress failure"), status_code=500)
        with self._state_lock:
            running = self._state["job_count"] > 0
            if running and not self._gate.is_set():
                self._state["sampling_step"] = min(
                    self._state["sampling_steps"], self._state["sampling_step"] + 1
                )
            state = dict(self._state)
        if not running:
            return JSONResponse(
                {
                    "progress": 0.0,
                    "eta_relative": 0.0,
                    "state": state,
                    "current_image": None,
                    "textinfo": None,
                }
            )
        progress = 0.01 + state["job_no"] / state["job_count"]
        if state["sampling_steps"] > 0:
            progress += state["sampling_step"] / state["sampling_steps"] / state["job_count"]
        skip = request.query_params.get("skip_current_image", "false").lower() == "true"
        return JSONResponse(
            {
                "progress": min(progress, 1.0),
                "eta_relative": max(0.0, (1.0 - progress) * 2.0),
                "state": state,
                "current_image": None if skip else make_b64(64, 64, "PNG", (128, 128, 128)),
                "textinfo": None,
            }
        )

    async def _interrupt_route(self, request: Request) -> Response:
        await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        self._interrupt.set()
        with self._state_lock:
            self._state["interrupted"] = True
        return JSONResponse({})

    async def _sd_models(self, request: Request) -> Response:
        await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        if self.models_reply is not None:
            reply = self.models_reply
            await self.pause(reply.delay)
            if reply.status >= 400:
                payload = reply.error_body if reply.error_body is not None else _default_error(reply.status)
                return self.json_response(payload, reply)
            if reply.raw is not None or reply.drop_after is not None:
                return self.json_response([], reply)
        return JSONResponse(
            [
                {
                    "title": self.title(filename),
                    "model_name": filename.rsplit(".", 1)[0],
                    "hash": self._sha(filename)[:10],
                    "sha256": self._sha(filename),
                    "filename": f"/webui/models/Stable-diffusion/{filename}",
                    "config": None,
                }
                for filename in self.models
            ]
        )

    async def _options(self, request: Request) -> Response:
        await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        first = self.models[0] if self.models else None
        return JSONResponse(
            {
                "sd_model_checkpoint": self.title(first) if first else None,
                "sd_checkpoint_hash": self._sha(first) if first else None,
                "samples_format": "png",
                "CLIP_stop_at_last_layers": 1,
                "sd_vae": "Automatic",
            }
        )
