"""The FastAPI application factory.

Start-up never waits: the app answers /healthz as soon as uvicorn listens, while the database is
migrated and the registry loaded in the background; API routes wait for that (see deps.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from mmstudio import __version__
from mmstudio.process import settle_heap
from mmstudio.settings import Settings
from mmstudio.web import (
    chat_api,
    chat_ui_api,
    codegen_api,
    compare_api,
    errors,
    images_api,
    jobs_api,
    keys_api,
    knowledge_api,
    metrics_api,
    models_api,
    openai_api,
    openai_images,
    openai_videos,
    openapi_doc,
    story_api,
    video_studio_api,
)
from mmstudio.web.auth import GatewayAuth
from mmstudio.web.body_limit import BodySizeLimit
from mmstudio.web.ui import pages

log = logging.getLogger(__name__)


async def _open_studio(
    app: FastAPI, settings: Settings, environ: dict[str, str] | None, *, own_process: bool
) -> None:
    try:
        # Imported in a thread: SQLAlchemy, Alembic and the adapters take a while to import.
        module: Any = await asyncio.to_thread(importlib.import_module, "mmstudio.studio")
        studio = await module.Studio.open(settings, environ=environ)
        studio.start_background()
        app.state.studio = studio
    except Exception as exc:
        log.exception("mmstudio failed to start")
        app.state.startup_error = str(exc) or type(exc).__name__
    finally:
        if own_process:  # before any traffic: what start-up left is never walked by the collector again
            settle_heap()
        app.state.ready.set()


def create_app(
    settings: Settings, *, environ: dict[str, str] | None = None, own_process: bool = False
) -> FastAPI:
    """The studio's ASGI app. `own_process` says the app is the whole process (`mmstudio serve`): once
    the studio is open it settles the heap (`mmstudio.process`), which a host application or a test
    process should not have done to it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.studio = None
        app.state.startup_error = None
        app.state.ready = asyncio.Event()
        opening = asyncio.create_task(
            _open_studio(app, settings, environ, own_process=own_process), name="mmstudio-open"
        )
        try:
            yield
        finally:
            if not opening.done():
                opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            if app.state.studio is not None:
                await app.state.studio.close()

    app = FastAPI(title="mmstudio", version=__version__, lifespan=lifespan)
    errors.install(app)
    openapi_doc.install(app)

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, Any]:
        """The process is up. `ready` says whether the database and registry are loaded."""
        state = app.state
        status = "error" if state.startup_error else "ok"
        return {
            "status": status,
            "ready": state.studio is not None,
            "version": __version__,
            "error": state.startup_error,
        }

    app.include_router(models_api.router)
    app.include_router(metrics_api.router)
    app.include_router(keys_api.router)
    app.include_router(openai_api.router)
    app.include_router(chat_api.router)
    app.include_router(chat_ui_api.router)
    app.include_router(knowledge_api.router)
    app.include_router(compare_api.router)
    app.include_router(codegen_api.router)
    app.include_router(images_api.router)
    app.include_router(openai_images.router)
    app.include_router(jobs_api.router)
    app.include_router(openai_videos.router)
    app.include_router(video_studio_api.router)
    app.include_router(story_api.router)
    pages.install(app)
    app.add_middleware(GatewayAuth)
    image_upload = int(settings.config.images.max_upload_mb * 1_000_000)
    # Outermost: an oversized body is refused before anything else reads it.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=int(settings.config.limits.max_body_mb * 1_000_000),
        uploads={
            "/api/chat/ui/documents": int(settings.config.chat.max_upload_mb * 1_000_000),
            # An edit may carry several images and a mask.
            "/api/media": image_upload,
            "/v1/images/edits": image_upload * 4,
        },
    )
    return app
