"""The studio's pages: shells rendered from templates, plus the static files they load.

A page holds no private data: what it shows is fetched from /api by HTMX or the page's script.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from mmstudio.domain.codegen.catalog import FRAMEWORKS, TARGET_TYPES
from mmstudio.domain.codegen.service import MAX_DESCRIPTION, MAX_NAME
from mmstudio.domain.jobs.types import STATES
from mmstudio.domain.video.projects import CAMERA, RANGES, TUNES
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import chat_views
from mmstudio.web.ui.markdown import pygments_css
from mmstudio.web.ui.templating import STATIC, render

router = APIRouter(include_in_schema=False)

JOBS_PAGE = 50  # jobs per page on /jobs (the list grows with "Show more")
GALLERY_PAGE = 40  # images per gallery page (the API's default and the page's infinite-scroll step)


@router.get("/")
async def front_door(studio: StudioDep) -> RedirectResponse:
    """Chat when a model is ready, else onboarding."""
    ready = any(v.available for v in chat_views(studio))
    return RedirectResponse("/chat" if ready else "/onboarding", status_code=307)


@router.get("/chat", response_class=HTMLResponse)
async def chat(request: Request) -> HTMLResponse:
    return render(request, "chat.html", page="chat", title="Chat", conversation_id=None)


@router.get("/chat/c/{conversation_id}", response_class=HTMLResponse)
async def chat_conversation(request: Request, conversation_id: str) -> HTMLResponse:
    return render(request, "chat.html", page="chat", title="Chat", conversation_id=conversation_id)


@router.get("/onboarding", response_class=HTMLResponse)
async def onboarding(request: Request) -> HTMLResponse:
    return render(request, "onboarding.html", page="onboarding", title="Add a model")


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request) -> HTMLResponse:
    return render(request, "models.html", page="models", title="Models")


@router.get("/compare", response_class=HTMLResponse)
async def compare(request: Request) -> HTMLResponse:
    return render(request, "compare.html", page="compare", title="Compare")


@router.get("/creator-studio", response_class=HTMLResponse)
async def creator(request: Request) -> HTMLResponse:
    return render(
        request,
        "creator.html",
        page="creator",
        title="Creator Studio",
        frameworks=list(FRAMEWORKS.values()),
        target_types=list(TARGET_TYPES.values()),
        name_max=MAX_NAME,  # the form stops what the API would refuse
        description_max=MAX_DESCRIPTION,
    )


@router.get("/images", response_class=HTMLResponse)
async def images(request: Request) -> HTMLResponse:
    return render(request, "images.html", page="images", title="Image Studio", page_size=GALLERY_PAGE)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(request: Request) -> HTMLResponse:
    return render(request, "jobs.html", page="jobs", title="Jobs", states=STATES, page_size=JOBS_PAGE)


@router.get("/video-studio", response_class=HTMLResponse)
async def video_studio(request: Request) -> HTMLResponse:
    def sliders(names: tuple[str, ...]) -> list[tuple[str, str, float, float]]:
        return [(n, n.replace("_", " ").capitalize(), *RANGES[n]) for n in names]

    return render(  # the sliders' ranges are the ones the API checks
        request,
        "video_studio.html",
        page="video_studio",
        title="Video Studio",
        camera=sliders(CAMERA),
        tunes=sliders(TUNES),
        duration=tuple(int(v) for v in RANGES["duration_s"]),
    )


@router.get("/metrics-dashboard", response_class=HTMLResponse)
async def metrics(request: Request) -> HTMLResponse:
    return render(request, "metrics.html", page="metrics", title="Metrics")


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page links: answer it (an SVG) instead of a 404."""
    return Response(
        (STATIC / "favicon.svg").read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/static/pygments.css")
async def code_colours() -> Response:
    return Response(pygments_css(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def install(app: FastAPI) -> None:
    """Mount the pages, their fragments and the static files on `app`."""
    from mmstudio.web.ui import (
        chat_views,
        compare_views,
        creator_views,
        header,
        models_views,
        onboarding_views,
        story_pages,
    )

    app.include_router(router)
    app.include_router(header.router)
    app.include_router(models_views.router)
    app.include_router(onboarding_views.router)
    app.include_router(compare_views.router)
    app.include_router(chat_views.router)
    app.include_router(creator_views.router)
    app.include_router(story_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
