"""Story mode's API, one tier at a time: `/api/stories/{tier}/...` (start a story, follow a scene as it
is written, choose, retry, the gallery) and the seed design's JSON routes for a scene's image and video
(`/{tier}/story/image/{scene_id}`, `/{tier}/story/video/{scene_id}` and their `/retry`).

A tier that does not exist or is switched off, and anything of another tier, answers 404 with the same
plain words: nothing confirms it exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from mmstudio import __version__
from mmstudio.domain.story import exchange
from mmstudio.domain.story.exchange import model_name
from mmstudio.domain.story.service import (
    MAX_CHOICE,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_PHOTOS,
    MAX_PREMISE,
    MediaState,
    SceneEvent,
    StoryStart,
)
from mmstudio.domain.story.types import STORY_SORTS, Character, Scene, Story, StoryTree
from mmstudio.errors import InvalidRequest
from mmstudio.web.bodies import (
    IMAGE_UPLOAD_TYPES,
    PAGE_PARAMETERS,
    body_schema,
    int_param,
    parse_body,
    read_upload,
    upload_body,
)
from mmstudio.web.constraints import RequestModel
from mmstudio.web.deps import StudioDep
from mmstudio.web.images_api import MEDIA_RESPONSES, THUMB_RESPONSES, asset_bytes, asset_thumb, tier_asset
from mmstudio.web.sse import sse_event, sse_response, with_keepalive
from mmstudio.web.ui.templating import templates

router = APIRouter(tags=["stories"])


class StoryIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    premise: str = Field(min_length=1, max_length=MAX_PREMISE)
    text_model: str | None = Field(default=None, max_length=400, description="default: the tier's")
    image_model: str | None = Field(default=None, max_length=400, description="default: the tier's")
    video_model: str | None = Field(default=None, max_length=400, description="video mode's model")
    memory_mode: bool = Field(default=False, description="characters' descriptions and photos go along")
    video_mode: bool = Field(default=False, description="a short video clip for each scene")


class ChoiceIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    choice: int | None = Field(default=None, ge=0, le=3, description="the index of one of the choices")
    text: str | None = Field(default=None, min_length=1, max_length=MAX_CHOICE, description="your own")


class SaveIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200, description="your own title")


class CharacterIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    photo_ids: list[str] = Field(default_factory=list, max_length=MAX_PHOTOS, description="uploaded photos")


class CharacterPatch(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    photo_ids: list[str] | None = Field(default=None, max_length=MAX_PHOTOS)


def character_json(character: Character) -> dict[str, Any]:
    return {
        "id": character.id,
        "name": character.name,
        "description": character.description,
        "photos": [
            {
                "id": p,
                "url": f"/api/stories/{character.tier}/media/{p}",
                "thumbUrl": f"/api/stories/{character.tier}/media/{p}/thumb",
            }
            for p in character.photo_ids
        ],
        "createdAt": character.created_at.isoformat(),
        "updatedAt": character.updated_at.isoformat(),
    }


def story_json(story: Story, names: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        **({"modelNames": names} if names is not None else {}),
        "id": story.id,
        "tier": story.tier,
        "title": story.title,
        "premise": story.premise,
        "textModel": story.text_model,
        "imageModel": story.image_model,
        "videoModel": story.video_model,
        "memoryMode": story.memory_mode,
        "videoMode": story.video_mode,
        "hasVideo": story.has_video,
        "sceneCount": story.scene_count,
        "saved": story.saved,
        "coverUrl": f"/api/stories/{story.tier}/media/{story.cover_asset_id}/thumb"
        if story.cover_asset_id
        else None,
        "currentSceneId": story.current_scene_id,
        "createdAt": story.created_at.isoformat(),
        "updatedAt": story.updated_at.isoformat(),
    }


def scene_json(scene: Scene) -> dict[str, Any]:
    return {
        "id": scene.id,
        "storyId": scene.story_id,
        "parentId": scene.parent_id,
        "choice": scene.choice,
        "depth": scene.depth,
        "state": scene.state,
        "title": scene.title,
        "narrative": scene.narrative,
        "imagePrompt": scene.image_prompt,
        "choices": list(scene.choices),
        "error": scene.error,
        "modelUsed": scene.model_used,
        "attempts": list(scene.attempts),
        "imageJobId": scene.image_job_id,
        "videoJobId": scene.video_job_id,
    }


def tree_json(tree: StoryTree, names: dict[str, str] | None = None) -> dict[str, Any]:
    return {**story_json(tree.story, names), "scenes": [scene_json(s) for s in tree.scenes]}


def media_json(state: MediaState) -> dict[str, Any]:
    body: dict[str, Any] = {"status": state.status, "url": state.url}
    if state.error is not None:
        body["error"] = state.error
    if state.progress is not None:
        body["progress"] = state.progress
    return body


def _event(event: SceneEvent) -> bytes:
    if event.type == "partial":
        return sse_event("partial", dict(event.partial))
    body: dict[str, Any] = {"scene": scene_json(event.scene) if event.scene is not None else None}
    if event.type == "error":
        body["error"] = event.error
    return sse_event(event.type, body)


# -- /api/stories/{tier} ------------------------------------------------------------------------------


@router.get("/api/stories/{tier}")
async def tier_info(tier: str, studio: StudioDep) -> JSONResponse:
    """The tier's name, limits and the models a story may use here now (usable and allowed)."""
    stories = studio.stories
    config = stories.tiers.get(tier)
    await stories.video_models.refresh()
    videos = stories.video_model_ids(config) if config.video else []
    return JSONResponse(
        {
            "tier": tier,
            "name": config.name,
            "maxScenes": config.max_scenes,
            "videoAllowed": config.video,
            "videoAvailable": bool(videos),
            "imageModels": _image_choices(studio, stories.image_models(config)),
            "videoModels": _video_choices(studio, videos),
            "defaultImageModel": config.image_model,
        }
    )


@router.post(
    "/api/stories/{tier}/stories", status_code=201, response_model=None, openapi_extra=body_schema(StoryIn)
)
async def start_story(tier: str, request: Request, studio: StudioDep) -> JSONResponse:
    """Start a story: it and its first scene are stored at once, and the scene is written in the
    background (follow it at `/api/stories/{tier}/scenes/{id}/events`)."""
    body = await parse_body(request, StoryIn)
    story, scene = await studio.stories.start(tier, StoryStart(**body.model_dump()))
    return JSONResponse({"story": story_json(story), "scene": scene_json(scene)}, status_code=201)


@router.get(
    "/api/stories/{tier}/stories",
    openapi_extra={
        "parameters": [
            *PAGE_PARAMETERS["parameters"],
            {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
            {"name": "sort", "in": "query", "required": False, "schema": {"enum": list(STORY_SORTS)}},
        ]
    },
)
async def gallery(tier: str, request: Request, studio: StudioDep) -> JSONResponse:
    """The tier's gallery: `sort` updated (newest first, the default), created, title or scenes; `q`
    searches titles and premises; `limit` (1 to 100, default 20) and `offset` page it."""
    limit, offset = int_param(request, "limit", 20), int_param(request, "offset", 0)
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"limit must be between 1 and 100, got {limit}", field="limit")
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, got {offset}", field="offset")
    sort = request.query_params.get("sort", "updated")
    if sort not in STORY_SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(STORY_SORTS)}", field="sort")
    q = (request.query_params.get("q") or "").strip()[:200] or None
    page = await studio.stories.gallery(tier, q=q, sort=sort, limit=limit, offset=offset)
    known = _known(studio)
    return JSONResponse(
        {
            "items": [story_json(s, _names(studio, s, known)) for s in page.items],
            "total": page.total,
            "limit": limit,
            "offset": offset,
        }
    )


@router.get("/api/stories/{tier}/stories/{story_id}")
async def get_story(tier: str, story_id: str, studio: StudioDep) -> JSONResponse:
    """The story and every scene of every branch, parents before children."""
    tree = await studio.stories.get(tier, story_id)
    return JSONResponse(tree_json(tree, _names(studio, tree.story)))


@router.get("/api/stories/{tier}/scenes/{scene_id}")
async def get_scene(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse(scene_json(await studio.stories.scene(tier, scene_id)))


@router.get("/api/stories/{tier}/scenes/{scene_id}/events", response_model=None)
async def scene_events(tier: str, scene_id: str, studio: StudioDep) -> Response:
    """Server-sent events while the scene is written: `partial` with the fields written so far,
    `picture` (the scene with its image job, and video job in video mode) as soon as its image prompt is
    complete, then `scene` (the stored scene) or `error`. A scene already written answers `scene` at
    once."""
    stories = studio.stories
    await stories.scene(tier, scene_id)  # a 404 before the stream starts

    async def frames() -> AsyncIterator[bytes]:
        async for event in stories.follow(tier, scene_id):
            yield _event(event)

    return sse_response(with_keepalive(frames()))


@router.post(
    "/api/stories/{tier}/scenes/{scene_id}/choose",
    status_code=201,
    response_model=None,
    openapi_extra=body_schema(ChoiceIn),
)
async def choose(tier: str, scene_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """The next scene: one of this scene's choices, or your own words. Choosing again on an earlier
    scene starts a branch; both paths are kept."""
    body = await parse_body(request, ChoiceIn)
    scene = await studio.stories.choose(tier, scene_id, index=body.choice, text=body.text)
    return JSONResponse(scene_json(scene), status_code=201)


@router.post("/api/stories/{tier}/scenes/{scene_id}/retry")
async def retry_scene(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    """Write a failed scene again."""
    return JSONResponse(scene_json(await studio.stories.retry_scene(tier, scene_id)))


# -- the seed design's routes ---------------------------------------------------------------------


@router.get("/{tier}/story/image/{scene_id}")
async def scene_image(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    """`{"status": none | pending | generating | complete | failed, "url"}` of the scene's image."""
    return JSONResponse(media_json(await studio.stories.media_state(tier, scene_id, "image")))


@router.post("/{tier}/story/image/{scene_id}/retry")
async def retry_scene_image(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    """Make the scene's image again (and its video after it, in video mode)."""
    return JSONResponse(media_json(await studio.stories.retry_media(tier, scene_id, "image")))


@router.get("/{tier}/story/video/{scene_id}")
async def scene_video(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    """`{"status", "url"}` of the scene's video (video mode)."""
    return JSONResponse(media_json(await studio.stories.media_state(tier, scene_id, "video")))


@router.post("/{tier}/story/video/{scene_id}/retry")
async def retry_scene_video(tier: str, scene_id: str, studio: StudioDep) -> JSONResponse:
    """Make the scene's video again (its image first, when that failed)."""
    return JSONResponse(media_json(await studio.stories.retry_media(tier, scene_id, "video")))


# -- the tier's media --------------------------------------------------------------------------------


@router.get("/api/stories/{tier}/media/{asset_id}", responses=MEDIA_RESPONSES)
async def tier_media(tier: str, asset_id: str, request: Request, studio: StudioDep) -> Response:
    """A scene's image or video, a character's photo: only under its own tier."""
    studio.stories.tiers.get(tier)
    return await asset_bytes(request, studio, await tier_asset(studio, asset_id, tier))


@router.get("/api/stories/{tier}/media/{asset_id}/thumb", responses=THUMB_RESPONSES)
async def tier_media_thumb(tier: str, asset_id: str, request: Request, studio: StudioDep) -> Response:
    studio.stories.tiers.get(tier)
    return await asset_thumb(request, studio, await tier_asset(studio, asset_id, tier))


# -- characters (memory mode) ------------------------------------------------------------------------


@router.post(
    "/api/stories/{tier}/photos",
    status_code=201,
    openapi_extra=upload_body({"file": "a photo (PNG, JPEG, WebP, GIF)"}, content_types=IMAGE_UPLOAD_TYPES),
)
async def upload_photo(tier: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A character's reference photo (multipart field `file`), checked and cleaned like every upload."""
    studio.stories.tiers.get(tier)
    data, filename = await read_upload(request, "photo")
    asset = await studio.stories.upload_photo(tier, data, filename or "photo")
    url = f"/api/stories/{tier}/media/{asset.id}"
    return JSONResponse({"id": asset.id, "url": url, "thumbUrl": f"{url}/thumb"}, status_code=201)


@router.get("/api/stories/{tier}/characters")
async def list_characters(tier: str, studio: StudioDep) -> JSONResponse:
    return JSONResponse({"items": [character_json(c) for c in await studio.stories.characters(tier)]})


@router.post(
    "/api/stories/{tier}/characters",
    status_code=201,
    response_model=None,
    openapi_extra=body_schema(CharacterIn),
)
async def create_character(tier: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A character of the tier: in memory mode its description goes to every scene's text request and
    its photos to every image request (of a model that takes reference images)."""
    body = await parse_body(request, CharacterIn)
    made = await studio.stories.create_character(
        tier, name=body.name, description=body.description, photo_ids=body.photo_ids
    )
    return JSONResponse(character_json(made), status_code=201)


@router.patch(
    "/api/stories/{tier}/characters/{character_id}",
    response_model=None,
    openapi_extra=body_schema(CharacterPatch),
)
async def update_character(tier: str, character_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    body = await parse_body(request, CharacterPatch)
    changes = body.model_dump(exclude_unset=True)
    return JSONResponse(character_json(await studio.stories.update_character(tier, character_id, changes)))


@router.delete("/api/stories/{tier}/characters/{character_id}", status_code=204, response_class=Response)
async def delete_character(tier: str, character_id: str, studio: StudioDep) -> Response:
    await studio.stories.delete_character(tier, character_id)
    return Response(status_code=204)


# -- the gallery: delete, export, import -----------------------------------------------------------


@router.post(
    "/api/stories/{tier}/stories/{story_id}/save", response_model=None, openapi_extra=body_schema(SaveIn)
)
async def save_story(tier: str, story_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """Keep the story in the tier's gallery (at once by default: `stories.auto_save`), maybe renamed."""
    raw = await request.body()
    body = await parse_body(request, SaveIn) if raw.strip() else SaveIn()
    story = await studio.stories.save(tier, story_id, title=body.title)
    return JSONResponse(story_json(story, _names(studio, story)))


@router.delete("/api/stories/{tier}/stories/{story_id}")
async def delete_story(tier: str, story_id: str, request: Request, studio: StudioDep) -> JSONResponse:
    """Delete a story (the page asks first). `?media=delete` also deletes its pictures and videos that
    nothing else uses; by default every file is kept."""
    media = request.query_params.get("media", "keep")
    if media not in ("keep", "delete"):
        raise InvalidRequest("media must be keep (the default) or delete", field="media")
    deleted = await studio.stories.delete(tier, story_id, delete_media=media == "delete")
    return JSONResponse({"deleted": story_id, "mediaDeleted": deleted})


@router.get("/api/stories/{tier}/stories/{story_id}/export.json")
async def export_json(tier: str, story_id: str, studio: StudioDep) -> Response:
    """The story as a file to keep or import again: every branch, pictures and videos inside."""
    data = await studio.stories.export(tier, story_id)
    body = json.dumps(data, ensure_ascii=False, indent=1)
    return Response(body, media_type="application/json", headers=_download(data, "json"))


@router.get(
    "/api/stories/{tier}/stories/{story_id}/export.html",
    responses={200: {"description": "the story as one HTML page", "content": {"text/html": {}}}},
)
async def export_html(tier: str, story_id: str, studio: StudioDep) -> Response:
    """The story as one self-contained web page (pictures and videos inside) to read anywhere."""
    data = await studio.stories.export(tier, story_id)
    tree = await studio.stories.get(tier, story_id)
    by_id = {s["id"]: s for s in data["scenes"]}
    depth = {s.id: s.depth for s in tree.scenes}
    children: dict[str | None, int] = {}
    for scene in data["scenes"]:
        children[scene["parent"]] = children.get(scene["parent"], 0) + 1
    scenes = [
        {
            **s,
            "depth": depth.get(s["id"], 0),
            "branch": children.get(s["parent"], 0) > 1,
            "image": s["image_url"],
            "video": s["video_url"],
            "paragraphs": [p for p in s["text"].split("\n") if p.strip()],
        }
        for s in by_id.values()
    ]
    names = _names(studio, tree.story)
    html = (
        templates()
        .get_template("export_story.html")
        .render(story=tree.story, scenes=scenes, names=names, version=__version__)
    )
    return Response(html, media_type="text/html; charset=utf-8", headers=_download(data, "html"))


@router.post(
    "/api/stories/{tier}/import",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": exchange.FILE_SCHEMA}}}
    },
)
async def import_story(tier: str, request: Request, studio: StudioDep) -> JSONResponse:
    """A story file (the seed's older format, or an export) into the tier's gallery."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the story file is not valid JSON: {exc}", field="body") from None
    story = await studio.stories.import_story(tier, data)
    return JSONResponse(story_json(story, _names(studio, story)), status_code=201)


def _download(data: dict[str, Any], extension: str) -> dict[str, str]:
    slug = re.sub(r"[^a-z0-9]+", "-", (data.get("title") or "story").lower()).strip("-") or "story"
    return {"Content-Disposition": f'attachment; filename="{slug[:60]}.{extension}"'}


def _image_choices(studio: Any, ids: list[str]) -> list[dict[str, str]]:
    """The usable image models as the home page lists them: id, name, and the provider they group by."""
    views = {v.entry.id: v for v in studio.registry.views()}
    return [
        {
            "id": model_id,
            "name": views[model_id].entry.display_name if model_id in views else model_id,
            "provider": views[model_id].endpoint.display_name
            if model_id in views
            else model_id.split("/")[0],
        }
        for model_id in ids
    ]


def _video_choices(studio: Any, ids: list[str]) -> list[dict[str, str]]:
    entries = studio.stories.video_models.entries
    return [
        {
            "id": model_id,
            "name": entries[model_id].display_name if model_id in entries else model_id,
            "provider": entries[model_id].provider if model_id in entries else model_id.split("/")[0],
        }
        for model_id in ids
    ]


def _known(studio: Any) -> dict[str, str]:
    known = {v.entry.id: v.entry.display_name for v in studio.registry.views()}
    return known | {e.id: e.display_name for e in studio.stories.video_models.entries.values()}


def _names(studio: Any, story: Story, known: dict[str, str] | None = None) -> dict[str, str]:
    """The story's models as people know them ("GPT Image 1", "Grok Imagine", "DALL-E")."""
    known = known if known is not None else _known(studio)
    return {
        "text": model_name(story.text_model, known) if story.text_model else "the default model",
        "image": model_name(story.image_model, known),
        "video": model_name(story.video_model, known) if story.video_model else "",
    }
