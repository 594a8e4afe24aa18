"""The video models mmstudio can call: the local engines' video workflows (ComfyUI's, usable while the
engine answers and has the workflow's files), then each cloud vendor's table of models with their
capabilities, usable when the vendor's key is set; resolved by id (``provider/model``), by the vendor's
bare name, or by an alias (the seed's ``runway-gen3-alpha``), and the plan a video job tries in order:
local first, then cloud.

Sora is supported but never chosen for you (OpenAI deprecated the endpoints): it is tried only when named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mmstudio.domain.video.handler import VideoModel
from mmstudio.domain.video.local import LocalVideoEngines
from mmstudio.errors import InvalidRequest, ModelNotFound, NoModelAvailable, NoModelRegistered
from mmstudio.providers.media import CLOUD_VIDEO_MODELS, cloud_video_models
from mmstudio.providers.media.video_base import VideoAdapter, VideoCapabilities

ALIASES = {
    "runway-gen3-alpha": "runway/gen3a_turbo",
    "gen3-alpha": "runway/gen3a_turbo",
    "grok-imagine-video": "xai/grok-imagine-video",
    "veo": "gemini/veo-3.1-generate-preview",
    "sora": "openai/sora-2",
}
DISPLAY_NAMES = {
    "runway/gen3a_turbo": "Runway Gen-3 Alpha Turbo",
    "runway/gen4_turbo": "Runway Gen-4 Turbo",
    "xai/grok-imagine-video": "Grok Imagine Video",
    "gemini/veo-3.1-generate-preview": "Veo 3.1",
    "gemini/veo-3.1-fast-generate-preview": "Veo 3.1 Fast",
    "openai/sora-2": "Sora 2",
    "openai/sora-2-pro": "Sora 2 Pro",
}
NEVER_DEFAULT = frozenset({"openai"})
NO_VIDEO_MODEL = (
    "Add a video model: start ComfyUI with a Wan video model, or set RUNWAYML_API_SECRET, XAI_API_KEY or "
    "GEMINI_API_KEY (or OPENAI_API_KEY for Sora)."
)


@dataclass(frozen=True, slots=True)
class VideoEntry:
    id: str
    provider: str
    upstream: str
    display_name: str
    capabilities: VideoCapabilities
    usable: bool
    reason: str | None  # why it is not usable (the variable to set, the engine to start)
    local: bool = False


class VideoModels:
    """`keys` maps a provider to whether its key is set; `adapter_for(provider)` builds its adapter;
    `local` gives the local engines' video models (call `refresh` to look at them again)."""

    def __init__(
        self,
        keys: Mapping[str, bool],
        adapter_for: Callable[[str], VideoAdapter],
        local: LocalVideoEngines | None = None,
    ) -> None:
        self._adapter_for = adapter_for
        self._adapters: dict[str, VideoAdapter] = {}
        self.local = local
        self.cloud: dict[str, VideoEntry] = {}
        for provider in CLOUD_VIDEO_MODELS:
            for upstream, caps in cloud_video_models(provider).items():
                model_id = f"{provider}/{upstream}"
                usable = keys.get(provider, False)
                self.cloud[model_id] = VideoEntry(
                    id=model_id,
                    provider=provider,
                    upstream=upstream,
                    display_name=DISPLAY_NAMES.get(model_id, upstream),
                    capabilities=caps,
                    usable=usable,
                    reason=None if usable else f"set {caps.key_env or provider.upper() + '_API_KEY'}",
                )

    async def refresh(self) -> None:
        """Look again at what the local engines can run (at most every few seconds per engine)."""
        if self.local is not None:
            await self.local.refresh()

    @property
    def entries(self) -> dict[str, VideoEntry]:
        """Every video model, local ones first, as of the last `refresh`."""
        found: dict[str, VideoEntry] = {}
        for model in self.local.models() if self.local is not None else ():
            model_id = f"{model.provider}/{model.name}"
            found[model_id] = VideoEntry(
                id=model_id,
                provider=model.provider,
                upstream=model.name,
                display_name=model.display_name,
                capabilities=model.capabilities,
                usable=model.usable,
                reason=model.reason,
                local=True,
            )
        return {**found, **self.cloud}

    def usable_ids(self) -> list[str]:
        return [e.id for e in self.entries.values() if e.usable]

    def entry(self, ref: str) -> VideoEntry:
        """By id, alias or the vendor's bare name; anything else is a 400 listing the video models."""
        key = ALIASES.get(ref.strip().lower(), ref.strip())
        entries = self.entries
        found = entries.get(key)
        if found is None:
            bare = [e for e in entries.values() if e.upstream == key]
            found = bare[0] if len(bare) == 1 else None
        if found is None:
            listing = ", ".join(self.usable_ids()) or "none right now. " + NO_VIDEO_MODEL
            raise ModelNotFound(
                ref, self.usable_ids(), f"Unknown video model {ref!r}. Video models: {listing}"
            )
        return found

    def resolve(self, ref: str, *, usable_only: bool = True) -> VideoModel:
        """The model ready to call. A job's worker resolves with `usable_only` False: the plan was
        checked when the job was made, and a model that stopped being usable since fails at its vendor
        (no key, engine offline) like any other failure, so the next model is tried."""
        entry = self.entry(ref)
        if usable_only and not entry.usable:
            raise NoModelAvailable(
                f"{entry.display_name} ({entry.id}) is not usable: {entry.reason}",
                [(entry.id, entry.reason or "")],
            )
        adapter = self.local.adapter(entry.provider) if entry.local and self.local is not None else None
        if adapter is None:
            adapter = self._adapters.get(entry.provider)
        if adapter is None:
            adapter = self._adapters[entry.provider] = self._adapter_for(entry.provider)
        return VideoModel(
            id=entry.id,
            provider=entry.provider,
            upstream=entry.upstream,
            capabilities=entry.capabilities,
            adapter=adapter,
            display_name=entry.display_name,
        )

    def plan(self, ref: str | None, *, fallbacks: bool = True, has_image: bool | None = None) -> list[str]:
        """The chosen model, then (with fallbacks) the first usable model of each other local engine and
        keyed vendor, local first, in the table's order (never Sora unless named). Without a choice,
        those alone. Without a start image (`has_image` False) models that only animate an image are left
        out, and choosing one is a 400 saying what to give it; with one, models that cannot start from
        an image are left out of the fallbacks. `has_image` None (a listing) leaves both in."""
        chosen = self.entry(ref) if ref else None
        if chosen is not None and not chosen.usable:
            raise NoModelAvailable(
                f"{chosen.display_name} ({chosen.id}) is not usable: {chosen.reason}",
                [(chosen.id, chosen.reason or "")],
            )
        if chosen is not None and has_image is False and not chosen.capabilities.text_to_video:
            raise InvalidRequest(
                f"{chosen.display_name} ({chosen.id}) makes a video from a start image: give start_image "
                "(an uploaded image), or after_job with the job that makes the image",
                field="start_image",
            )
        plan = [chosen.id] if chosen is not None else []
        if chosen is None or fallbacks:
            seen = {chosen.provider} if chosen is not None else set()
            for entry in self.entries.values():
                if not entry.usable or entry.provider in seen or entry.provider in NEVER_DEFAULT:
                    continue
                if has_image is False and not entry.capabilities.text_to_video:
                    continue
                if has_image is True and not entry.capabilities.image_to_video:
                    continue
                plan.append(entry.id)
                seen.add(entry.provider)
        if not plan:
            if has_image is False and any(
                e.usable and not e.capabilities.text_to_video for e in self.entries.values()
            ):
                raise InvalidRequest(
                    "The video models you can use make a video from a start image: give start_image (an "
                    "uploaded image) or after_job (the job that makes it), or set XAI_API_KEY or "
                    "GEMINI_API_KEY for text-to-video.",
                    field="start_image",
                )
            raise NoModelRegistered(NO_VIDEO_MODEL)
        return plan
