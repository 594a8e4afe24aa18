"""Story mode: starting a story, writing its scenes through the router, illustrating each scene with an
image job and, in video mode, a video job that depends on it, and branching on the reader's choices.

Persist first: the premise and every choice are stored (a story, a scene in state ``writing``) before any
model is called, so nothing the user wrote is lost. A scene is written in the background: the page
follows it (`follow`), a reader who leaves and comes back finds it written, and a process that stopped
mid-scene leaves it ``failed`` with a retry (`recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from mmstudio.config import TierConfig
from mmstudio.domain.jobs.service import JobService
from mmstudio.domain.jobs.types import Job
from mmstudio.domain.media.image_jobs import ImageJobs
from mmstudio.domain.media.images import ImageOrder
from mmstudio.domain.media.types import MediaAsset
from mmstudio.domain.registry import ModelRegistry
from mmstudio.domain.router import RouteInfo, RouteOptions, Router
from mmstudio.domain.story import exchange, writing
from mmstudio.domain.story.tiers import Tiers, check_allowed
from mmstudio.domain.story.types import Character, Scene, Story, StoryPage, StoryTree
from mmstudio.domain.video.models import NEVER_DEFAULT, NO_VIDEO_MODEL, VideoModels
from mmstudio.domain.video.service import VideoOrder, VideoService
from mmstudio.errors import InvalidRequest, ModelNotFound, NoModelRegistered, NotFound, StudioError
from mmstudio.providers.base import ChatRequest, Message

log = logging.getLogger(__name__)

MAX_PREMISE = 4000
MAX_CHOICE = 300
MAX_NAME, MAX_DESCRIPTION, MAX_PHOTOS = 80, 2000, 8
INTERRUPTED = "writing stopped when the studio restarted; retry to write this scene"
NO_IMAGE_MODEL = (
    "No image model is usable for stories: set OPENAI_API_KEY (GPT Image), XAI_API_KEY (Grok Imagine) or "
    "GEMINI_API_KEY, or start a local image engine (ComfyUI, Automatic1111)."
)
MediaStatus = Literal["none", "pending", "generating", "complete", "failed"]
_PENDING = frozenset({"queued"})
_GENERATING = frozenset({"submitting", "running", "downloading"})


class StoryStore(Protocol):
    async def create_story(
        self,
        tier: str,
        *,
        premise: str,
        title: str,
        text_model: str,
        image_model: str,
        video_model: str | None,
        memory_mode: bool,
        video_mode: bool,
        saved: bool = False,
        legacy_format: int | None = None,
        created_at: datetime | None = None,
    ) -> Story: ...
    async def get_story(self, tier: str, story_id: str) -> Story | None: ...
    async def update_story(self, tier: str, story_id: str, fields: Mapping[str, Any]) -> Story: ...
    async def list_stories(
        self, tier: str, *, q: str | None = None, sort: str = "updated", limit: int = 20, offset: int = 0
    ) -> StoryPage: ...
    async def add_scene(
        self, tier: str, story_id: str, *, parent_id: str | None, choice: str | None
    ) -> Scene: ...
    async def update_scene(self, tier: str, scene_id: str, fields: Mapping[str, Any]) -> Scene: ...
    async def get_scene(self, tier: str, scene_id: str) -> Scene | None: ...
    async def tree(self, tier: str, story_id: str) -> StoryTree | None: ...
    async def list_characters(self, tier: str) -> list[Character]: ...
    async def create_character(
        self, tier: str, *, name: str, description: str, photo_ids: Sequence[str]
    ) -> Character: ...
    async def get_character(self, tier: str, character_id: str) -> Character | None: ...
    async def update_character(
        self, tier: str, character_id: str, fields: Mapping[str, Any]
    ) -> Character: ...
    async def delete_character(self, tier: str, character_id: str) -> list[str]: ...
    async def fail_unfinished(self, error: str) -> int: ...
    async def delete_story(self, tier: str, story_id: str) -> list[str]: ...
    async def media_in_use(self, asset_ids: Iterable[str]) -> set[str]: ...


class Media(Protocol):
    async def get(self, asset_id: str) -> MediaAsset | None: ...
    async def read_path(self, asset: MediaAsset) -> Any: ...
    async def save_upload(self, data: bytes, filename: str, *, tier: str | None = None) -> MediaAsset: ...
    async def read_bytes(self, asset: MediaAsset) -> bytes: ...
    async def delete(self, asset_id: str) -> MediaAsset: ...


@dataclass(frozen=True, slots=True)
class StoryStart:
    premise: str
    text_model: str | None = None
    image_model: str | None = None
    video_model: str | None = None
    memory_mode: bool = False
    video_mode: bool = False


@dataclass(frozen=True, slots=True)
class SceneEvent:
    """``partial`` (the fields written so far), ``picture`` (the scene with its picture jobs, started
    while the rest is written), ``scene`` (written and stored) or ``error``."""

    type: Literal["partial", "picture", "scene", "error"]
    scene_id: str
    partial: Mapping[str, Any] = field(default_factory=dict)
    scene: Scene | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MediaState:
    status: MediaStatus
    url: str | None = None
    error: str | None = None
    progress: float | None = None


@dataclass
class _Writing:
    """A scene being written: the latest partial fields, the pages following it, and the picture jobs
    started as soon as the answer's image prompt was complete (`picture_prompt`, `pictures`)."""

    scene_id: str
    partial: dict[str, Any] = field(default_factory=dict)
    listeners: list[asyncio.Queue[SceneEvent]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    picture_prompt: str | None = None
    pictures: dict[str, Any] = field(default_factory=dict)
    picture_event: SceneEvent | None = None  # replayed to a page that follows later

    def publish(self, event: SceneEvent) -> None:
        for queue in self.listeners:
            queue.put_nowait(event)


class StoryService:
    def __init__(
        self,
        store: StoryStore,
        tiers: Tiers,
        router: Router,
        registry: ModelRegistry,
        image_jobs: ImageJobs,
        videos: VideoService,
        video_models: VideoModels,
        jobs: JobService,
        media: Media,
    ) -> None:
        self.store = store
        self.tiers = tiers
        self.router = router
        self.registry = registry
        self.image_jobs = image_jobs
        self.videos = videos
        self.video_models = video_models
        self.jobs = jobs
        self.assets = media
        self._writing: dict[str, _Writing] = {}

    # -- models a tier offers ----------------------------------------------------------------------

    def image_models(self, tier: TierConfig) -> list[str]:
        """The usable image models the tier allows, local first."""
        views = [
            v
            for v in self.registry.views()
            if v.entry.modality == "image"
            and v.available
            and (not tier.image_models or v.entry.id in tier.image_models)
        ]
        views.sort(key=lambda v: (v.entry.kind != "local", v.entry.provider_id, v.entry.id))
        return [v.entry.id for v in views]

    def video_model_ids(self, tier: TierConfig, *, named: str | None = None) -> list[str]:
        """The usable video models the tier allows that animate an image (Sora only when `named`:
        it is never chosen for you)."""
        return [
            e.id
            for e in self.video_models.entries.values()
            if e.usable
            and e.capabilities.image_to_video
            and (not tier.video_models or e.id in tier.video_models)
            and (e.provider not in NEVER_DEFAULT or e.id == named)
        ]

    # -- starting and choosing ---------------------------------------------------------------------

    async def start(self, tier_name: str, start: StoryStart) -> tuple[Story, Scene]:
        """Check the request, store the story and its first scene (still unwritten), and start writing."""
        tier = self.tiers.get(tier_name)
        premise = start.premise.strip() if isinstance(start.premise, str) else ""
        if not premise:
            raise InvalidRequest("premise is empty: say what the story is about", field="premise")
        if len(premise) > MAX_PREMISE:
            raise InvalidRequest(
                f"premise is {len(premise)} characters; at most {MAX_PREMISE}", field="premise"
            )
        text_model = (
            start.text_model or tier.text_model or (tier.text_models[0] if tier.text_models else None)
        )
        if start.text_model:  # a model that does not exist is a 400 listing those that do, before anything
            text_model = self.registry.resolve(start.text_model).entry.id
        text_model = text_model or self.router.planner.default_model() or ""
        if text_model:
            check_allowed(text_model, tier.text_models, "text", "text_model")
        image_model = self._image_model(tier, start.image_model)
        video_model = await self._video_model(tier, start) if start.video_mode else None
        story = await self.store.create_story(
            tier_name,
            premise=premise,
            title="",
            text_model=text_model,
            image_model=image_model,
            video_model=video_model,
            memory_mode=start.memory_mode,
            video_mode=start.video_mode,
            saved=self.tiers.auto_save,
        )
        scene = await self.store.add_scene(tier_name, story.id, parent_id=None, choice=None)
        self._begin(tier_name, scene)
        return story, scene

    def _image_model(self, tier: TierConfig, asked: str | None) -> str:
        usable = self.image_models(tier)
        if not usable:
            raise NoModelRegistered(NO_IMAGE_MODEL)
        model = asked or tier.image_model
        if asked:
            check_allowed(asked, tier.image_models, "image", "image_model")
        try:
            model = self.registry.resolve(model).entry.id
        except NotFound:
            if asked:
                raise ModelNotFound(
                    asked, usable, f"{asked} is not an image model here; usable: {', '.join(usable)}"
                ) from None
            return usable[0]  # the tier's default is not set up on this studio: the first usable one
        if model not in usable:
            if asked:
                raise InvalidRequest(
                    f"{model} cannot be used now; usable image models: {', '.join(usable)}",
                    field="image_model",
                )
            return usable[0]
        return model

    async def _video_model(self, tier: TierConfig, start: StoryStart) -> str:
        if not tier.video:
            raise InvalidRequest(f"the {tier.name} tier does not allow video mode", field="video_mode")
        await self.video_models.refresh()
        asked = start.video_model or tier.video_model
        named = self.video_models.entry(asked).id if asked else None
        usable = self.video_model_ids(tier, named=named)
        if not usable:
            raise InvalidRequest(
                "video mode needs a video model that animates an image, and none is usable. "
                + NO_VIDEO_MODEL,
                field="video_mode",
            )
        if start.video_model and named is not None:
            check_allowed(named, tier.video_models, "video", "video_model")
        if asked is None:
            return usable[0]
        entry = self.video_models.entry(asked)
        if entry.id not in usable:
            why = entry.reason or "it does not animate an image"
            if start.video_model:
                raise InvalidRequest(
                    f"{entry.display_name} cannot make this story's videos now ({why}); "
                    f"usable: {', '.join(usable)}",
                    field="video_model",
                )
            return usable[0]
        return entry.id

    async def choose(
        self, tier_name: str, scene_id: str, *, index: int | None = None, text: str | None = None
    ) -> Scene:
        """The next scene after `scene_id`: one of its choices (by index) or the reader's own words. A
        scene that already has children gets another one: a branch, and both paths are kept."""
        tier = self.tiers.get(tier_name)
        scene = await self._scene(tier_name, scene_id)
        if scene.state != "written":
            raise InvalidRequest("this scene is not written yet: wait for it, or retry it", field="scene_id")
        if (index is None) == (text is None):
            raise InvalidRequest("give either a choice index or your own words (text)", field="choice")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(scene.choices):
                raise InvalidRequest(
                    f"choice must be 0 to {len(scene.choices) - 1} "
                    f"(this scene has {len(scene.choices)} choices)",
                    field="choice",
                )
            choice = scene.choices[index]
        else:
            choice = (text or "").strip()
            if not choice or len(choice) > MAX_CHOICE:
                raise InvalidRequest(f"your own choice must be 1 to {MAX_CHOICE} characters", field="text")
        if scene.depth + 1 >= tier.max_scenes:
            raise InvalidRequest(
                f"this story has reached the {tier.name} tier's {tier.max_scenes} scenes", field="choice"
            )
        child = await self.store.add_scene(tier_name, scene.story_id, parent_id=scene.id, choice=choice)
        await self.store.update_story(tier_name, scene.story_id, {"current_scene_id": child.id})
        self._begin(tier_name, child)
        return child

    async def retry_scene(self, tier_name: str, scene_id: str) -> Scene:
        """Write a failed scene again (the choice that led to it is kept)."""
        self.tiers.get(tier_name)
        scene = await self._scene(tier_name, scene_id)
        if scene.state != "failed":
            raise InvalidRequest(
                f"this scene is {scene.state}: only a failed scene is written again", field="scene_id"
            )
        scene = await self.store.update_scene(tier_name, scene.id, {"state": "writing", "error": None})
        self._begin(tier_name, scene)
        return scene

    async def scene(self, tier_name: str, scene_id: str) -> Scene:
        self.tiers.get(tier_name)
        return await self._scene(tier_name, scene_id)

    async def _scene(self, tier_name: str, scene_id: str) -> Scene:
        scene = await self.store.get_scene(tier_name, scene_id)
        if scene is None:
            raise NotFound("no such scene")
        return scene

    async def get(self, tier_name: str, story_id: str) -> StoryTree:
        self.tiers.get(tier_name)
        tree = await self.store.tree(tier_name, story_id)
        if tree is None:
            raise NotFound("no such story")
        return tree

    async def gallery(
        self, tier_name: str, *, q: str | None = None, sort: str = "updated", limit: int = 20, offset: int = 0
    ) -> StoryPage:
        self.tiers.get(tier_name)
        return await self.store.list_stories(tier_name, q=q, sort=sort, limit=limit, offset=offset)

    # -- characters (memory mode) ------------------------------------------------------------------

    async def upload_photo(self, tier_name: str, data: bytes, filename: str) -> MediaAsset:
        """A reference photo, checked and cleaned like every upload, kept in the tier."""
        self.tiers.get(tier_name)
        asset = await self.assets.save_upload(data, filename, tier=tier_name)
        if not asset.mime.startswith("image/"):
            raise InvalidRequest(f"a reference photo must be an image, not {asset.mime}", field="file")
        return asset

    async def characters(self, tier_name: str) -> list[Character]:
        self.tiers.get(tier_name)
        return await self.store.list_characters(tier_name)

    async def create_character(
        self, tier_name: str, *, name: str, description: str, photo_ids: Sequence[str] = ()
    ) -> Character:
        self.tiers.get(tier_name)
        checked = await self._character_fields(
            tier_name, {"name": name, "description": description, "photo_ids": photo_ids}
        )
        return await self.store.create_character(tier_name, **checked)

    async def update_character(
        self, tier_name: str, character_id: str, changes: Mapping[str, Any]
    ) -> Character:
        self.tiers.get(tier_name)
        if await self.store.get_character(tier_name, character_id) is None:
            raise NotFound("no such character")
        return await self.store.update_character(
            tier_name, character_id, await self._character_fields(tier_name, changes)
        )

    async def delete_character(self, tier_name: str, character_id: str) -> None:
        self.tiers.get(tier_name)
        if await self.store.get_character(tier_name, character_id) is None:
            raise NotFound("no such character")
        await self.store.delete_character(tier_name, character_id)

    async def _character_fields(self, tier_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        if "name" in fields:
            name = fields["name"].strip() if isinstance(fields["name"], str) else ""
            if not name or len(name) > MAX_NAME:
                raise InvalidRequest(f"name must be 1 to {MAX_NAME} characters", field="name")
            checked["name"] = name
        if "description" in fields:
            text = fields["description"]
            if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
                raise InvalidRequest(
                    f"description must be text of at most {MAX_DESCRIPTION} characters", field="description"
                )
            checked["description"] = text.strip()
        if "photo_ids" in fields:
            ids = list(fields["photo_ids"] or ())
            if len(ids) > MAX_PHOTOS:
                raise InvalidRequest(
                    f"at most {MAX_PHOTOS} reference photos per character", field="photo_ids"
                )
            for photo_id in ids:
                asset = await self.assets.get(photo_id) if isinstance(photo_id, str) else None
                if asset is None or asset.tier != tier_name or not asset.mime.startswith("image/"):
                    raise InvalidRequest(
                        f"photo_ids: no photo {photo_id!r} in this tier "
                        f"(upload it to /api/stories/{tier_name}/photos)",
                        field="photo_ids",
                    )
            checked["photo_ids"] = tuple(dict.fromkeys(ids))
        return checked

    # -- writing -----------------------------------------------------------------------------------

    def _begin(self, tier_name: str, scene: Scene) -> None:
        writing_ = self._writing.get(scene.id)
        if writing_ is not None and writing_.task is not None and not writing_.task.done():
            return
        writing_ = self._writing[scene.id] = _Writing(scene.id)
        writing_.task = asyncio.create_task(self._write(tier_name, scene, writing_), name=f"scene {scene.id}")

    async def follow(self, tier_name: str, scene_id: str) -> AsyncIterator[SceneEvent]:
        """The scene as it is written: the fields so far, then the stored scene (or why it failed).
        A scene already written (or failed) answers at once."""
        self.tiers.get(tier_name)
        scene = await self._scene(tier_name, scene_id)
        active = self._writing.get(scene_id)
        if active is None or active.task is None or active.task.done():
            scene = await self._scene(tier_name, scene_id)  # it may have ended between the two looks
            if scene.state == "written":
                yield SceneEvent("scene", scene.id, scene=scene)
            elif scene.state == "failed":
                yield SceneEvent("error", scene.id, scene=scene, error=scene.error)
            return
        queue: asyncio.Queue[SceneEvent] = asyncio.Queue()
        active.listeners.append(queue)
        try:
            if active.partial:
                yield SceneEvent("partial", scene_id, partial=dict(active.partial))
            if active.picture_event is not None:
                yield active.picture_event
            while True:
                event = await queue.get()
                yield event
                if event.type in ("scene", "error"):
                    return
        finally:
            active.listeners.remove(queue)

    async def _write(self, tier_name: str, scene: Scene, active: _Writing) -> None:
        try:
            story, request, chars = await self._request(tier_name, scene)

            async def picture_from(prompt: str) -> None:
                active.picture_prompt = prompt
                early = replace(scene, image_prompt=prompt)
                active.pictures = await self._start_pictures(tier_name, story, early, chars)
                if active.pictures:  # the page shows the picture coming while the narrative is written
                    started = await self.store.update_scene(
                        tier_name, scene.id, {"image_prompt": prompt, **active.pictures}
                    )
                    active.picture_event = SceneEvent("picture", scene.id, scene=started)
                    active.publish(active.picture_event)

            answer, info = await self._generate(request, active, picture_from)
            parsed = writing.parse_scene(answer)
            attempts = [a.as_dict() for a in info.attempts]
            if isinstance(parsed, writing.Unreadable):
                repair = writing.repair_messages(request.messages, answer, parsed)
                answer, info = await self._generate(
                    ChatRequest(model=request.model, messages=repair, json_mode=request.json_mode),
                    active,
                    picture_from,
                )
                attempts += [a.as_dict() for a in info.attempts]
                parsed = writing.parse_scene(answer)
            if isinstance(parsed, writing.Unreadable):
                who = info.model_used or story.text_model or "the text model"
                raise StudioError(
                    f"{who} answered twice without a usable scene ({parsed.problem}). Retry, or start the "
                    "story with another text model."
                )
            written = await self.store.update_scene(
                tier_name,
                scene.id,
                {
                    "title": parsed.title,
                    "narrative": parsed.narrative,
                    "image_prompt": parsed.image_prompt,
                    "choices": list(parsed.choices),
                    "state": "written",
                    "error": None,
                    "model_used": info.model_used,
                    "attempts": attempts,
                },
            )
            changes: dict[str, Any] = {"current_scene_id": written.id}
            if written.parent_id is None and not story.title:
                changes["title"] = parsed.title
            await self.store.update_story(tier_name, story.id, changes)
            if active.pictures and active.picture_prompt == parsed.image_prompt:
                active.pictures = {}  # the jobs started early are this scene's: keep them
            else:  # the repaired answer pictures something else (or nothing was started)
                await self._drop_pictures(active)
                written = await self._illustrate(tier_name, story, written, chars)
            active.publish(SceneEvent("scene", scene.id, scene=written))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._drop_pictures(active)
                await self.store.update_scene(
                    tier_name,
                    scene.id,
                    {"state": "failed", "error": INTERRUPTED, "image_job_id": None, "video_job_id": None},
                )
            raise
        except Exception as exc:  # the scene must end failed with the reason, never stay "writing"
            message = (
                exc.message if isinstance(exc, StudioError) else f"unexpected error ({type(exc).__name__})"
            )
            if not isinstance(exc, StudioError):
                log.exception("writing scene %s failed", scene.id)
            failed = None
            with contextlib.suppress(Exception):
                await self._drop_pictures(active)  # a failed scene has no picture coming
                failed = await self.store.update_scene(
                    tier_name,
                    scene.id,
                    {"state": "failed", "error": message, "image_job_id": None, "video_job_id": None},
                )
            active.publish(SceneEvent("error", scene.id, scene=failed, error=message))
        finally:
            self._writing.pop(scene.id, None)

    async def _request(self, tier_name: str, scene: Scene) -> tuple[Story, ChatRequest, list[Character]]:
        tier = self.tiers.get(tier_name)
        story = await self.store.get_story(tier_name, scene.story_id)
        tree = await self.store.tree(tier_name, scene.story_id)
        if story is None or tree is None:
            raise NotFound("no such story")
        path = tree.path_to(scene.id)[:-1]
        chars = await self.store.list_characters(tier_name) if story.memory_mode else []
        messages: Sequence[Message] = writing.messages(
            instructions=tier.instructions,
            premise=story.premise,
            path=path,
            choice=scene.choice,
            characters=chars,
            max_scenes=tier.max_scenes,
        )
        return story, ChatRequest(model=story.text_model, messages=tuple(messages), json_mode=False), chars

    async def _generate(
        self, request: ChatRequest, active: _Writing, picture_from: Callable[[str], Awaitable[None]]
    ) -> tuple[str, RouteInfo]:
        """The answer as it streams, published as partial scenes; `picture_from` is called once, with
        the image prompt, as soon as it is complete (the next field began), so the picture is made while
        the rest of the scene is written."""
        stream = self.router.stream(request, RouteOptions(route="story"))
        text = ""
        shown: Mapping[str, Any] = {}
        try:
            await stream.start()
            async for event in stream:
                if event.type == "text" and event.text:
                    text += event.text
                    partial = writing.partial_scene(text)
                    if partial != shown:
                        shown = partial
                        active.partial = dict(partial)
                        active.publish(SceneEvent("partial", active.scene_id, partial=dict(partial)))
                        prompt = writing.complete_image_prompt(partial)
                        if prompt and active.picture_prompt is None:
                            await picture_from(prompt)
                elif event.type == "error":
                    raise stream.info.error or StudioError(event.error or "the text model failed")
        finally:
            await stream.aclose()
        return text, stream.info

    # -- pictures and videos -----------------------------------------------------------------------

    async def _illustrate(
        self, tier_name: str, story: Story, scene: Scene, chars: Iterable[Character]
    ) -> Scene:
        """Start the scene's pictures and record them on the scene."""
        fields = await self._start_pictures(tier_name, story, scene, chars)
        return await self.store.update_scene(tier_name, scene.id, fields) if fields else scene

    async def _start_pictures(
        self, tier_name: str, story: Story, scene: Scene, chars: Iterable[Character]
    ) -> dict[str, Any]:
        """The scene's image job and, in video mode, its video job that waits for the image: their ids as
        scene fields (none when the picture could not be started: the scene still reads, and its picture
        shows the reason and a retry)."""
        tier = self.tiers.get(tier_name)
        fields: dict[str, Any] = {}
        try:
            image_job = await self._image_job(tier_name, tier, story, scene, chars)
            fields["image_job_id"] = image_job.id
            if story.video_mode and story.video_model:
                fields["video_job_id"] = (await self._video_job(tier, story, scene, image_job.id)).id
        except StudioError as exc:
            log.warning("scene %s: its picture could not be started: %s", scene.id, exc.message)
        return fields

    async def _drop_pictures(self, active: _Writing) -> None:
        """Cancel the jobs started early for an answer that is not the scene after all."""
        for job_id in (active.pictures.get("video_job_id"), active.pictures.get("image_job_id")):
            if job_id:
                with contextlib.suppress(StudioError):
                    await self.jobs.cancel(job_id)
        active.pictures, active.picture_event = {}, None

    async def _image_job(
        self, tier_name: str, tier: TierConfig, story: Story, scene: Scene, chars: Iterable[Character]
    ) -> Job:
        photos = tuple(p for c in chars for p in c.photo_ids) if story.memory_mode else ()
        caps = self.registry.resolve(story.image_model).entry.image
        takes = caps is not None and caps.supports_references
        references = photos[: caps.max_references or len(photos)] if takes and caps is not None else ()
        fidelity = "high" if references and caps is not None and caps.supports_input_fidelity else None
        order = ImageOrder(
            prompt=scene.image_prompt,
            model=story.image_model,
            references=references,
            input_fidelity=fidelity,
            moderation=tier.moderation,
            tier=tier_name,
            fallbacks=not tier.image_models,
        )
        job, _ = await self.image_jobs.create(order)
        return job

    async def _video_job(self, tier: TierConfig, story: Story, scene: Scene, image_job_id: str) -> Job:
        order = VideoOrder(
            prompt=scene.image_prompt,
            model=story.video_model,
            after_job=image_job_id,
            fallbacks=not tier.video_models,
            tier=story.tier,
        )
        job, _ = await self.videos.create(order)
        return job

    async def media_state(self, tier_name: str, scene_id: str, kind: Literal["image", "video"]) -> MediaState:
        """Where the scene's image or video is: none, pending, generating, complete (with its URL) or
        failed (with why). A finished file that is missing on disk is failed, so the page offers Retry."""
        self.tiers.get(tier_name)
        scene = await self._scene(tier_name, scene_id)
        job_id = scene.image_job_id if kind == "image" else scene.video_job_id
        kept = scene.image_asset_id if kind == "image" else scene.video_asset_id
        if kept is not None:  # recorded (or imported): there, or failed because its file is gone
            if await self._present(kept):
                return MediaState("complete", url=f"/api/stories/{tier_name}/media/{kept}")
            if job_id is None:
                return MediaState("failed", error=f"the {kind} file is missing from the media store")
        if job_id is None:
            return MediaState("none")
        try:
            job = await self.jobs.get(job_id)
        except NotFound:
            return MediaState("failed", error="its job is gone")
        if job.state in _PENDING:
            return MediaState("pending", progress=job.progress)
        if job.state in _GENERATING:
            return MediaState("generating", progress=job.progress)
        if job.state != "complete" or not job.output_ids:
            return MediaState("failed", error=job.error_message or f"the {kind} job {job.state}")
        asset = await self.assets.get(job.output_ids[0])
        if asset is None:
            return MediaState("failed", error=f"the {kind} was deleted")
        try:
            await self.assets.read_path(asset)
        except NotFound:
            return MediaState("failed", error=f"the {kind} file is missing from the media store")
        await self._record(tier_name, scene, kind, asset.id)
        return MediaState("complete", url=f"/api/stories/{tier_name}/media/{asset.id}")

    async def _present(self, asset_id: str) -> bool:
        asset = await self.assets.get(asset_id)
        if asset is None:
            return False
        try:
            await self.assets.read_path(asset)
        except NotFound:
            return False
        return True

    async def _record(self, tier_name: str, scene: Scene, kind: str, asset_id: str) -> None:
        key = "image_asset_id" if kind == "image" else "video_asset_id"
        if getattr(scene, key) == asset_id:
            return
        await self.store.update_scene(tier_name, scene.id, {key: asset_id})
        story = await self.store.get_story(tier_name, scene.story_id)
        if story is None:
            return
        changes: dict[str, Any] = {}
        if kind == "image" and scene.parent_id is None:
            changes["cover_asset_id"] = asset_id
        if kind == "video" and not story.has_video:
            changes["has_video"] = True
        if changes:
            await self.store.update_story(tier_name, story.id, changes)

    async def retry_media(self, tier_name: str, scene_id: str, kind: Literal["image", "video"]) -> MediaState:
        """Make the scene's image (and, in video mode, its video after it) or only its video again."""
        tier = self.tiers.get(tier_name)
        scene = await self._scene(tier_name, scene_id)
        story = await self.store.get_story(tier_name, scene.story_id)
        if story is None or scene.state != "written":
            raise InvalidRequest("this scene is not written yet", field="scene_id")
        state = await self.media_state(tier_name, scene_id, kind)
        if state.status in ("pending", "generating", "complete"):
            return state
        if kind == "video":
            if not (story.video_mode and story.video_model):
                raise InvalidRequest("this story is not in video mode", field="video")
            image = await self.media_state(tier_name, scene_id, "image")
            if image.status == "failed" or image.status == "none":
                kind = "image"  # the video is made from the image: make that first
            else:
                job = await self._video_job(tier, story, scene, scene.image_job_id or "")
                await self.store.update_scene(
                    tier_name, scene.id, {"video_job_id": job.id, "video_asset_id": None}
                )
                return await self.media_state(tier_name, scene_id, "video")
        chars = await self.store.list_characters(tier_name) if story.memory_mode else []
        job = await self._image_job(tier_name, tier, story, scene, chars)
        fields: dict[str, Any] = {"image_job_id": job.id, "image_asset_id": None}
        if story.video_mode and story.video_model:
            fields["video_job_id"] = (await self._video_job(tier, story, scene, job.id)).id
            fields["video_asset_id"] = None
        await self.store.update_scene(tier_name, scene.id, fields)
        return await self.media_state(tier_name, scene_id, "image")

    # -- the gallery: save, delete, export, import ------------------------------------------------------

    async def save(self, tier_name: str, story_id: str, *, title: str | None = None) -> Story:
        """Keep the story in the tier's gallery (stories are saved at once unless `stories.auto_save`
        is off), optionally under a title of the user's."""
        self.tiers.get(tier_name)
        if await self.store.get_story(tier_name, story_id) is None:
            raise NotFound("no such story")
        changes: dict[str, Any] = {"saved": True}
        if title is not None:
            if not title.strip() or len(title) > 200:
                raise InvalidRequest("title must be 1 to 200 characters", field="title")
            changes["title"] = title.strip()
        return await self.store.update_story(tier_name, story_id, changes)

    async def delete(self, tier_name: str, story_id: str, *, delete_media: bool = False) -> list[str]:
        """Delete a story and its scenes. With `delete_media`, also its pictures and videos that
        nothing else uses (another story, a character); the default keeps every file. Returns the
        media ids deleted."""
        self.tiers.get(tier_name)
        if await self.store.get_story(tier_name, story_id) is None:
            raise NotFound("no such story")
        referenced = await self.store.delete_story(tier_name, story_id)
        if not delete_media or not referenced:
            return []
        still_used = await self.store.media_in_use(referenced)
        deleted = []
        for asset_id in referenced:
            if asset_id in still_used:
                continue
            with contextlib.suppress(NotFound):
                await self.assets.delete(asset_id)
                deleted.append(asset_id)
        return deleted

    async def export(self, tier_name: str, story_id: str) -> dict[str, Any]:
        """The story as a file of the current format, its pictures and videos inside (data: URIs)."""
        tree = await self.get(tier_name, story_id)
        for scene in tree.scenes:  # a finished image or video not yet recorded on its scene
            if scene.state == "written":
                await self.media_state(tier_name, scene.id, "image")
                if scene.video_job_id:
                    await self.media_state(tier_name, scene.id, "video")
        tree = await self.get(tier_name, story_id)
        media: dict[str, tuple[str, bytes]] = {}
        for scene in tree.scenes:
            for asset_id in (scene.image_asset_id, scene.video_asset_id):
                asset = await self.assets.get(asset_id) if asset_id else None
                if asset is not None and asset_id is not None and await self._present(asset_id):
                    media[asset_id] = (asset.mime, await self.assets.read_bytes(asset))
        return exchange.export(tree, media)

    async def import_story(self, tier_name: str, data: object) -> Story:
        """A story file (the seed's older format or the current one) into the tier's gallery, its
        pictures and videos stored in the tier."""
        self.tiers.get(tier_name)
        parsed = exchange.parse(data)
        story = await self.store.create_story(
            tier_name,
            premise=parsed.premise,
            title=parsed.title,
            text_model=parsed.text_model,
            image_model=parsed.image_model,
            video_model=parsed.video_model,
            memory_mode=parsed.memory_mode,
            video_mode=parsed.video_mode,
            saved=True,
            legacy_format=parsed.format if parsed.format < exchange.FORMAT else None,
            created_at=parsed.created_at,
        )
        try:
            return await self._fill(tier_name, story, parsed)
        except BaseException:  # nothing half-imported: the story and the files stored so far go
            with contextlib.suppress(Exception):
                for asset_id in await self.store.delete_story(tier_name, story.id):
                    with contextlib.suppress(NotFound):
                        await self.assets.delete(asset_id)
            raise

    async def _fill(self, tier_name: str, story: Story, parsed: exchange.ImportedStory) -> Story:
        ids: dict[str, str] = {}
        last: Scene | None = None
        for item in parsed.scenes:
            scene = await self.store.add_scene(
                tier_name, story.id, parent_id=ids[item.parent] if item.parent else None, choice=item.choice
            )
            ids[item.key] = scene.id
            fields: dict[str, Any] = {
                "title": item.title,
                "narrative": item.narrative,
                "image_prompt": item.image_prompt,
                "choices": list(item.choices),
                "state": "written",
            }
            for kind, media in (("image", item.image), ("video", item.video)):
                if media is not None:
                    extension = media[0].split("/", 1)[1]
                    asset = await self.assets.save_upload(media[1], f"{item.key}.{extension}", tier=tier_name)
                    fields[f"{kind}_asset_id"] = asset.id
            last = await self.store.update_scene(tier_name, scene.id, fields)
        first = parsed.scenes[0]
        changes: dict[str, Any] = {"current_scene_id": last.id if last else None}
        first_scene = await self.store.get_scene(tier_name, ids[first.key])
        if first_scene is not None and first_scene.image_asset_id:
            changes["cover_asset_id"] = first_scene.image_asset_id
        if any(s.video is not None for s in parsed.scenes):
            changes["has_video"] = True
        return await self.store.update_story(tier_name, story.id, changes)

    async def recover(self) -> int:
        """Scenes a stopped process left ``writing`` end ``failed``, with a retry (call at start-up)."""
        return await self.store.fail_unfinished(INTERRUPTED)

    async def close(self) -> None:
        """Stop scenes being written (they end failed with a retry)."""
        tasks = [w.task for w in self._writing.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
