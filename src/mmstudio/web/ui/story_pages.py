"""Story mode's pages, one tier at a time: the home (start a story), the scene view, the gallery, the
reader and the characters (memory mode's cast), under `/{tier}/...`; and `/stories`, the header's way in,
which lists the enabled tiers (or goes straight to the only one). They are shells: story.js fetches
everything from the story API.

A tier that is unknown or switched off gets the same plain 404 page, so nothing confirms it exists.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from mmstudio.config import RESERVED_TIERS, TierConfig
from mmstudio.domain.story.service import (
    MAX_CHOICE,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_PHOTOS,
    MAX_PREMISE,
)
from mmstudio.errors import NotFound
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import chat_views
from mmstudio.web.ui.templating import render

router = APIRouter(include_in_schema=False)

GALLERY_PAGE = 12  # stories per gallery page ("More" asks for the next)


def _not_found(request: Request) -> HTMLResponse:
    return render(request, "story_404.html", status_code=404, page="story", title="Not found")


def _reserved(tier: str) -> None:
    """The studio's own paths (`/api/...`, `/static/...`) keep their usual 404, never a story page."""
    if tier in RESERVED_TIERS:
        raise HTTPException(status_code=404, detail="Not Found")


def _tier(studio: Any, tier: str) -> TierConfig | None:
    _reserved(tier)
    try:
        config: TierConfig = studio.stories.tiers.get(tier)
    except NotFound:
        return None
    return config


def _text_models(studio: Any, config: TierConfig) -> list[tuple[str, list[tuple[str, str]]]]:
    """The usable text models the tier allows, grouped by provider: [(group, [(id, name)])]."""
    groups: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for view in chat_views(studio):
        if not view.available or (config.text_models and view.entry.id not in config.text_models):
            continue
        label = view.endpoint.display_name
        groups.setdefault(view.entry.provider_id, (label, []))[1].append(
            (view.entry.id, view.entry.display_name)
        )
    return list(groups.values())


def _page(
    request: Request, tier: str, config: TierConfig, view: str, title: str, **extra: Any
) -> HTMLResponse:
    return render(
        request,
        f"story_{view}.html",
        page="story",
        title=title,
        tier=tier,
        tier_name=config.name,
        view=view,
        **extra,
    )


@router.get("/stories", response_class=HTMLResponse, response_model=None)
async def story_tiers(request: Request, studio: StudioDep) -> Response:
    """The enabled tiers; with exactly one, its home. `stories` is reserved, so no tier shadows this.
    Switched-off tiers are never named; story counts come from the API (story.js), as on every page."""
    names = studio.stories.tiers.enabled()
    if len(names) == 1:
        return RedirectResponse(f"/{names[0]}/", status_code=307)
    tiers = [(name, studio.stories.tiers.get(name).name) for name in names]
    return render(request, "story_tiers.html", page="story", title="Stories", tiers=tiers, view="tiers")


@router.get("/{tier}/", response_class=HTMLResponse, response_model=None)
async def story_home(request: Request, tier: str, studio: StudioDep) -> Response:
    if tier in RESERVED_TIERS:  # what the router's slash redirect did before this route existed
        return RedirectResponse(f"/{tier}", status_code=307)
    config = _tier(studio, tier)
    if config is None:
        return _not_found(request)
    return _page(
        request,
        tier,
        config,
        "home",
        f"{config.name} stories",
        text_models=_text_models(studio, config),
        default_text_model=config.text_model or "",
        premise_max=MAX_PREMISE,
    )


async def _scene_page(
    request: Request, tier: str, story_id: str, scene_id: str | None, studio: Any
) -> Response:
    config = _tier(studio, tier)
    if config is None:
        return _not_found(request)
    try:
        tree = await studio.stories.get(tier, story_id)
    except NotFound:
        return _not_found(request)
    if scene_id is not None and all(s.id != scene_id for s in tree.scenes):
        return _not_found(request)
    return _page(
        request,
        tier,
        config,
        "scene",
        tree.story.title or "Story",
        story_id=story_id,
        scene_id=scene_id or "",
        choice_max=MAX_CHOICE,
    )


@router.get("/{tier}/story/{story_id}", response_class=HTMLResponse, response_model=None)
async def story_scene_current(request: Request, tier: str, story_id: str, studio: StudioDep) -> Response:
    return await _scene_page(request, tier, story_id, None, studio)


@router.get("/{tier}/story/{story_id}/scene/{scene_id}", response_class=HTMLResponse, response_model=None)
async def story_scene(
    request: Request, tier: str, story_id: str, scene_id: str, studio: StudioDep
) -> Response:
    return await _scene_page(request, tier, story_id, scene_id, studio)


@router.get("/{tier}/gallery", response_class=HTMLResponse, response_model=None)
async def story_gallery(request: Request, tier: str, studio: StudioDep) -> Response:
    config = _tier(studio, tier)
    if config is None:
        return _not_found(request)
    return _page(request, tier, config, "gallery", f"{config.name} gallery", page_size=GALLERY_PAGE)


@router.get("/{tier}/read/{story_id}", response_class=HTMLResponse, response_model=None)
async def story_reader(request: Request, tier: str, story_id: str, studio: StudioDep) -> Response:
    config = _tier(studio, tier)
    if config is None:
        return _not_found(request)
    try:
        tree = await studio.stories.get(tier, story_id)
    except NotFound:
        return _not_found(request)
    return _page(request, tier, config, "read", tree.story.title or "Untitled story", story_id=story_id)


@router.get("/{tier}/characters", response_class=HTMLResponse, response_model=None)
async def story_characters(request: Request, tier: str, studio: StudioDep) -> Response:
    config = _tier(studio, tier)
    if config is None:
        return _not_found(request)
    return _page(
        request,
        tier,
        config,
        "characters",
        f"{config.name} characters",
        name_max=MAX_NAME,
        description_max=MAX_DESCRIPTION,
        photos_max=MAX_PHOTOS,
    )


@router.get("/{tier}", response_model=None)
async def story_home_without_slash(request: Request, tier: str, studio: StudioDep) -> Response:
    """`/kids` goes to the tier's home; any other one-segment path stays a plain 404 (without this
    route the router's slash redirect would send `/anything` on to `/anything/`)."""
    if tier not in RESERVED_TIERS and _tier(studio, tier) is not None:
        return RedirectResponse(f"/{tier}/", status_code=307)
    raise HTTPException(status_code=404, detail="Not Found")
