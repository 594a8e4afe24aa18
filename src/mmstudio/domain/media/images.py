"""ImageService: one image request becomes a plan (the chat planner's), tried through the router's attempt
loop, and every image is stored with its recipe.

The order is the chosen model, its fallbacks, then `images.fallback_chain` (else local image engines that
answer, then one cloud image model per keyed provider), skipping offline, cooling-down and incapable
models (reference photos need `supports_references`). Each candidate gets the request adapted to what it
can do: the size mapped to its nearest size or ratio, `input_fidelity`, negative prompt, seed and steps
only where supported. A content-policy refusal is final unless `images.fallback_on_refusal` is set.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmstudio.config import StudioConfig
from mmstudio.domain.media.pictures import Picture
from mmstudio.domain.media.sizes import Mapped, map_shape, parse_shape
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.media.types import MediaAsset, Recipe
from mmstudio.domain.plan import Candidate, Needs, Plan
from mmstudio.domain.registry import ModelRegistry, Resolved
from mmstudio.domain.router import Attempt, RouteInfo, RouteOptions, Router, new_request_id
from mmstudio.errors import (
    BadRequest,
    ContentFiltered,
    InvalidRequest,
    ModelNotFound,
    NoModelAvailable,
    NoModelRegistered,
    NotFound,
    ProviderError,
    ProviderProtocolError,
    StudioError,
)
from mmstudio.providers.media.base import (
    ImageCapabilities,
    ImageProgress,
    ImageRequest,
    ImageResult,
    InputImage,
)
from mmstudio.providers.media.comfyui import BUILTIN_WORKFLOWS

MAX_N = 10
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")
FORMATS = ("png", "jpeg", "webp")
FIDELITIES = ("low", "high")
NO_IMAGE_MODEL = (
    "Add an image model: start ComfyUI (127.0.0.1:8188) or AUTOMATIC1111 with --api (127.0.0.1:7860), "
    "register an OpenAI-compatible images server, or set OPENAI_API_KEY, GEMINI_API_KEY or XAI_API_KEY."
)


@dataclass(frozen=True, slots=True)
class ImageOrder:
    """What a caller asks for. `references` and `mask` are media asset ids (uploads or earlier images)."""

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None  # WxH, W:H or auto
    quality: str | None = None
    seed: int | None = None
    steps: int | None = None
    negative_prompt: str | None = None
    references: tuple[str, ...] = ()
    mask: str | None = None
    input_fidelity: str | None = None
    output_format: str | None = None
    moderation: str | None = None  # "auto" or "low", sent where the model takes it (story tiers)
    workflow: str | None = None
    parent_id: str | None = None
    tier: str | None = None
    fallbacks: bool = True


class ImageObserver(Protocol):
    """Told what happens while an order runs (the SSE progress stream, the CLI's progress bar)."""

    async def planned(self, plan: Plan) -> None: ...

    async def trying(self, candidate: Candidate, number: int) -> None: ...

    async def failed(self, candidate: Candidate, attempt: Attempt) -> None: ...

    async def progress(self, model_id: str, progress: ImageProgress) -> None: ...

    async def image(self, asset: MediaAsset) -> None: ...


@dataclass
class ImageOutcome:
    assets: list[MediaAsset]
    info: RouteInfo
    size_used: str | None = None
    notes: list[str] = field(default_factory=list)
    usage: Mapping[str, Any] | None = None
    revised_prompt: str | None = None

    @property
    def model_used(self) -> str | None:
        return self.info.model_used


class _Bridge:
    """Adapts the router's synchronous observer calls to the async `ImageObserver`.

    It keeps the calls to make, not coroutines: a generation that ends early (cancelled, or an observer
    that raised) drops what it did not deliver without leaving never-awaited coroutines behind."""

    def __init__(self, observer: ImageObserver | None) -> None:
        self.observer = observer
        self.pending: list[Callable[[], Awaitable[None]]] = []

    def planned(self, plan: Plan) -> None:
        if self.observer is not None:
            observer = self.observer
            self.pending.append(lambda: observer.planned(plan))

    def trying(self, candidate: Candidate, number: int) -> None:
        if self.observer is not None:
            observer = self.observer
            self.pending.append(lambda: observer.trying(candidate, number))

    def failed(self, candidate: Candidate, attempt: Attempt) -> None:
        if self.observer is not None:
            observer = self.observer
            self.pending.append(lambda: observer.failed(candidate, attempt))

    async def flush(self) -> None:
        while self.pending:
            await self.pending.pop(0)()


class ImageService:
    def __init__(
        self,
        registry: ModelRegistry,
        router: Router,
        store: MediaStore,
        config: StudioConfig,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.registry = registry
        self.router = router
        self.store = store
        self.config = config
        self._clock = clock

    # -- models ----------------------------------------------------------------------------

    def image_model_ids(self, *, usable_only: bool = True) -> list[str]:
        return [
            v.entry.id
            for v in self.registry.views()
            if v.entry.modality == "image" and (v.available or not usable_only)
        ]

    def resolve_image_model(self, ref: str) -> Resolved:
        """An image model by id, alias or name; a chat model or an unknown name is a ModelNotFound
        listing the image models available now."""
        available = self.image_model_ids()
        listing = ", ".join(available) or "none right now. " + NO_IMAGE_MODEL
        try:
            resolved = self.registry.resolve(ref)
        except ModelNotFound:
            raise ModelNotFound(
                ref, available, f"Unknown image model {ref!r}. Image models available now: {listing}"
            ) from None
        if resolved.entry.modality != "image":
            raise ModelNotFound(
                ref,
                available,
                f"{resolved.entry.id} is a {resolved.entry.modality} model; image models: {listing}",
            )
        return resolved

    # -- generating ------------------------------------------------------------------------

    async def generate(
        self,
        order: ImageOrder,
        *,
        observer: ImageObserver | None = None,
        options: RouteOptions = RouteOptions(route="images"),
    ) -> ImageOutcome:
        selected = self._checked(order)
        references = tuple([await self._input(ref, "references") for ref in order.references])
        mask = await self._input(order.mask, "mask") if order.mask else None
        bridge = _Bridge(observer)
        info = RouteInfo(options.request_id or new_request_id(), order.model or None, observer=bridge)
        outcome = ImageOutcome([], info)
        try:
            info.plan = self._plan(order, selected)
            bridge.planned(info.plan)
            await bridge.flush()
            await self.router.admit_key(options)
            started = self._clock()

            async def call(
                candidate: Candidate,
            ) -> tuple[Candidate, ImageRequest, Mapped, ImageResult, list[Picture]]:
                await bridge.flush()
                request, mapped = self._adapt(order, candidate, references, mask)
                adapter = self.registry.image_adapter(candidate.resolved.endpoint)

                async def progress(update: ImageProgress) -> None:
                    if observer is not None:
                        await observer.progress(candidate.model_id, update)

                try:
                    result = await adapter.generate(request, progress)
                    checked = await self._check(candidate, result)
                    return candidate, request, mapped, result, checked
                finally:
                    await bridge.flush()

            final: tuple[type[ProviderError], ...] = (BadRequest,)
            if not self.config.images.fallback_on_refusal:
                final = (BadRequest, ContentFiltered)
            candidate, request, mapped, result, checked = await self.router.attempts(info, call, final=final)
            await bridge.flush()
            latency = round((self._clock() - started) * 1000.0, 2)
            outcome.size_used = mapped.used
            if mapped.note:
                outcome.notes.append(mapped.note)
            outcome.usage = result.usage
            outcome.revised_prompt = next((i.revised_prompt for i in result.images if i.revised_prompt), None)
            await self._save(order, candidate, request, result, checked, info, latency, outcome, observer)
        except StudioError as exc:
            await bridge.flush()
            self.router.finish(info, options, error=exc)
            raise
        except BaseException:
            self.router.finish(info, options, cancelled=True)
            raise
        self.router.finish(info, options)
        return outcome

    async def check(self, order: ImageOrder) -> Plan:
        """Everything `generate` would refuse before calling a model, without calling one (a job is
        stored only when its order can run): the fields, the chosen model and its limits, the input
        images, and a plan with at least one model."""
        selected = self._checked(order)
        for field_name, ids in (
            ("references", order.references),
            ("mask", (order.mask,) if order.mask else ()),
        ):
            for asset_id in ids:
                asset = await self.store.get(asset_id)
                if asset is None or not asset.mime.startswith("image/"):
                    raise NotFound(
                        f"{field_name}: no image {asset_id!r} (upload it with POST /api/media)",
                        field=field_name,
                    )
        return self._plan(order, selected)

    def _checked(self, order: ImageOrder) -> Resolved | None:
        self._validate(order)
        selected = self.resolve_image_model(order.model) if order.model and order.model.strip() else None
        if selected is not None:
            self._check_limits(order, _caps(selected))
        return selected

    def _validate(self, order: ImageOrder) -> None:
        if not order.prompt or not order.prompt.strip():
            raise InvalidRequest("prompt is required: describe the image to make", field="prompt")
        if not 1 <= order.n <= MAX_N:
            raise InvalidRequest(f"n must be between 1 and {MAX_N}, got {order.n}", field="n")
        parse_shape(order.size)
        if order.quality is not None and order.quality not in QUALITIES:
            raise InvalidRequest(
                f"quality {order.quality!r} is not one of: {', '.join(QUALITIES)}", field="quality"
            )
        if order.output_format is not None and order.output_format not in FORMATS:
            raise InvalidRequest(
                f"output_format {order.output_format!r} is not one of: {', '.join(FORMATS)}",
                field="output_format",
            )
        if order.input_fidelity is not None and order.input_fidelity not in FIDELITIES:
            raise InvalidRequest(
                f"input_fidelity {order.input_fidelity!r} is not one of: low, high", field="input_fidelity"
            )
        if order.steps is not None and not 1 <= order.steps <= 150:
            raise InvalidRequest(f"steps must be between 1 and 150, got {order.steps}", field="steps")
        if order.seed is not None and not -1 <= order.seed < 2**32:
            raise InvalidRequest(f"seed must be between -1 and {2**32 - 1}, got {order.seed}", field="seed")
        if order.workflow is not None:
            allowed = (*BUILTIN_WORKFLOWS, *self.config.images.workflows)
            if order.workflow not in allowed:
                # Never a path from the caller: only the shipped workflows and the ones the operator named.
                raise InvalidRequest(
                    f"workflow {order.workflow!r} is not one of: {', '.join(allowed)} "
                    "(register your own ComfyUI workflow under images.workflows in the config)",
                    field="workflow",
                )
        if order.mask and not order.references:
            raise InvalidRequest("a mask needs an image to edit in references", field="mask")

    def _check_limits(self, order: ImageOrder, caps: ImageCapabilities) -> None:
        if len(order.prompt) > caps.max_prompt_chars:
            raise InvalidRequest(
                f"prompt is {len(order.prompt)} characters; this model takes at most {caps.max_prompt_chars}",
                field="prompt",
            )
        if order.n > caps.max_n:
            raise InvalidRequest(f"n is {order.n}; this model makes at most {caps.max_n}", field="n")
        if order.references and caps.max_references and len(order.references) > caps.max_references:
            raise InvalidRequest(
                f"{len(order.references)} reference photos; this model takes at most {caps.max_references}",
                field="references",
            )

    def _plan(self, order: ImageOrder, selected: Resolved | None) -> Plan:
        needs = Needs(modality="image", references=bool(order.references), mask=order.mask is not None)
        chain = self.config.images.fallback_chain or tuple(self.router.planner.image_chain())
        model = selected.entry.id if selected is not None else None
        try:
            return self.router.planner.plan(model, needs, fallbacks=order.fallbacks, chain=chain)
        except NoModelAvailable as exc:
            if not self.image_model_ids(usable_only=False) or (not exc.skipped and selected is None):
                raise NoModelRegistered(NO_IMAGE_MODEL) from None
            if order.references and exc.skipped and all("reference" in why for _, why in exc.skipped):
                raise InvalidRequest(
                    "No image model that accepts reference photos is available: "
                    + "; ".join(f"{m} {why}" for m, why in exc.skipped),
                    field="references",
                ) from None
            raise

    def _adapt(
        self,
        order: ImageOrder,
        candidate: Candidate,
        references: tuple[InputImage, ...],
        mask: InputImage | None,
    ) -> tuple[ImageRequest, Mapped]:
        caps = _caps(candidate.resolved)
        mapped = map_shape(parse_shape(order.size), caps)
        seed = order.seed if order.seed is not None and order.seed >= 0 else None
        request = ImageRequest(
            model=candidate.resolved.entry.upstream,
            prompt=order.prompt.strip(),
            n=min(order.n, caps.max_n),
            size=mapped.size,
            aspect_ratio=mapped.aspect_ratio,
            quality=order.quality if not caps.qualities or order.quality in caps.qualities else None,
            seed=seed if caps.supports_seed else None,
            steps=order.steps if caps.supports_steps else None,
            negative_prompt=order.negative_prompt if caps.supports_negative_prompt else None,
            references=references,
            mask=mask if caps.supports_mask else None,
            input_fidelity=order.input_fidelity if caps.supports_input_fidelity else None,
            output_format=order.output_format if order.output_format in caps.output_formats else None,
            moderation=order.moderation if caps.supports_moderation else None,
            # A workflow the user registered by name (images.workflows) goes to ComfyUI as its file.
            workflow=self.config.images.workflows.get(order.workflow, order.workflow)
            if order.workflow
            else None,
        )
        return request, mapped

    async def _check(self, candidate: Candidate, result: ImageResult) -> list[Picture]:
        """Every image whole and readable, inside the attempt: damaged bytes (a cut-off PNG, base64 of
        something else) are the upstream's fault, so the router retries or moves on."""
        if not result.images:
            raise ProviderProtocolError(
                f"{candidate.resolved.display_name} answered without an image",
                provider=candidate.resolved.entry.provider_id,
                model=candidate.model_id,
            )
        checked = []
        for image in result.images:
            try:
                checked.append(await self.store.inspect(image.data))
            except InvalidRequest as exc:
                raise ProviderProtocolError(
                    f"{candidate.resolved.display_name} sent an image that cannot be used: {exc.message}",
                    provider=candidate.resolved.entry.provider_id,
                    model=candidate.model_id,
                ) from None
        return checked

    async def _input(self, asset_id: str | None, field_name: str) -> InputImage:
        asset = await self.store.get(asset_id) if asset_id else None
        if asset is None or not asset.mime.startswith("image/"):
            raise NotFound(
                f"{field_name}: no image {asset_id!r} (upload it with POST /api/media)", field=field_name
            )
        data = await self.store.read_bytes(asset)
        ext = asset.mime.rsplit("/", 1)[-1]
        return InputImage(data=data, media_type=asset.mime, name=f"{asset.id}.{ext}")

    async def _save(
        self,
        order: ImageOrder,
        candidate: Candidate,
        request: ImageRequest,
        result: ImageResult,
        checked: list[Picture],
        info: RouteInfo,
        latency_ms: float,
        outcome: ImageOutcome,
        observer: ImageObserver | None,
    ) -> None:
        entry = candidate.resolved.entry
        cost = _cost(entry.input_price, entry.output_price, result.usage)
        attempts = tuple(a.as_dict() for a in info.attempts)
        per_image_cost = round(cost / len(result.images), 6) if cost is not None and result.images else None
        for image, picture in zip(result.images, checked, strict=True):
            recipe = Recipe(
                model_requested=order.model,
                model_used=entry.id,
                provider=entry.provider_id,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                size=request.size,
                aspect_ratio=request.aspect_ratio,
                quality=request.quality,
                seed=image.seed if image.seed is not None else request.seed,
                steps=request.steps,
                n=request.n,
                references=order.references,
                workflow=request.workflow or _workflow_of(result),
                input_fidelity=request.input_fidelity,
                extra={"display_name": candidate.resolved.display_name},
            )
            asset = await self.store.save_generated(
                image.data,
                image.media_type,
                recipe=recipe,
                attempts=attempts,
                latency_ms=latency_ms,
                cost_usd=per_image_cost,
                parent_id=order.parent_id,
                tier=order.tier,
                checked=picture,
            )
            outcome.assets.append(asset)
            if observer is not None:
                await observer.image(asset)

    # -- the gallery -------------------------------------------------------------------------

    async def get(self, asset_id: str) -> MediaAsset:
        asset = await self.store.get(asset_id)
        if asset is None:
            raise NotFound(f"no image {asset_id!r}")
        return asset

    def reuse(self, asset: MediaAsset) -> dict[str, Any]:
        """The recipe of `asset` as a new `POST /api/images` body."""
        recipe = asset.recipe
        if recipe is None:
            raise InvalidRequest(f"{asset.id} is an upload; it has no recipe to reuse", field="id")
        body: dict[str, Any] = {
            "prompt": recipe.prompt,
            "model": recipe.model_requested or recipe.model_used,
            "n": 1,
            "size": recipe.size or recipe.aspect_ratio,
            "quality": recipe.quality,
            "seed": recipe.seed,
            "steps": recipe.steps,
            "negative_prompt": recipe.negative_prompt,
            "references": list(recipe.references),
        }
        return {k: v for k, v in body.items() if v not in (None, [])}


def _caps(resolved: Resolved) -> ImageCapabilities:
    return resolved.entry.image or ImageCapabilities()


def _workflow_of(result: ImageResult) -> str | None:
    value = result.info.get("workflow") if result.info else None
    return value if isinstance(value, str) else None


def _cost(
    input_price: float | None, output_price: float | None, usage: Mapping[str, Any] | None
) -> float | None:
    """USD from the vendor's token usage and the catalog's per-million prices, when both are known."""
    if not usage or (input_price is None and output_price is None):
        return None
    tokens_in = usage.get("input_tokens", usage.get("promptTokenCount", 0)) or 0
    tokens_out = usage.get("output_tokens", usage.get("candidatesTokenCount", 0)) or 0
    if not isinstance(tokens_in, int | float) or not isinstance(tokens_out, int | float):
        return None
    return round((tokens_in * (input_price or 0) + tokens_out * (output_price or 0)) / 1_000_000, 6)
