"""Request dependencies: the Studio the app's lifespan is opening (routes wait until it is ready)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from mmstudio.errors import StudioError

if TYPE_CHECKING:
    from mmstudio.studio import Studio

READY_TIMEOUT = 60.0


class StudioStarting(StudioError):
    """The studio is still opening its database (or failed to)."""


async def get_studio(request: Request) -> Studio:
    state = request.app.state
    if state.studio is None:
        try:
            await asyncio.wait_for(asyncio.shield(state.ready.wait()), READY_TIMEOUT)
        except TimeoutError:
            raise StudioStarting("the studio is still starting; try again in a moment") from None
    if state.studio is None:
        raise StudioStarting(f"the studio failed to start: {state.startup_error}")
    studio: Studio = state.studio
    return studio


if TYPE_CHECKING:
    StudioDep = Annotated[Studio, Depends(get_studio)]
else:  # the real type is imported lazily so the process answers /healthz before heavy imports
    StudioDep = Annotated[Any, Depends(get_studio)]
