"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mmstudio import __version__
from mmstudio.settings import Settings
from mmstudio.studio import Studio
from mmstudio.web import errors, models_api


def create_app(settings: Settings, *, environ: dict[str, str] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        studio = await Studio.open(settings, environ=environ)
        studio.start_background()
        app.state.studio = studio
        try:
            yield
        finally:
            await studio.close()

    app = FastAPI(title="mmstudio", version=__version__, lifespan=lifespan)
    errors.install(app)

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        """The process itself is up (it does not wait for any model engine)."""
        return {"status": "ok", "version": __version__}

    app.include_router(models_api.router)
    return app
