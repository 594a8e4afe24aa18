"""Request dependencies: the Studio the app's lifespan opened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mmstudio.studio import Studio


def get_studio(request: Request) -> Studio:
    studio: Studio = request.app.state.studio
    return studio


StudioDep = Annotated[Studio, Depends(get_studio)]
