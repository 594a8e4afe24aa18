"""Jinja2 templates for the UI: one environment, the filters pages share, the template response."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from mmstudio import __version__
from mmstudio.web.ui.explain import explain, headline
from mmstudio.web.ui.markdown import render_markdown

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """ "3 min ago" style; "never" for None."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now" if seconds < 10 else f"{seconds} s ago"


def ms(value: float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    env = Jinja2Templates(directory=str(TEMPLATES))
    env.env.filters["markdown"] = render_markdown
    env.env.filters["ago"] = ago
    env.env.filters["ms"] = ms
    env.env.filters["explain"] = explain
    env.env.filters["headline"] = headline
    env.env.globals["version"] = __version__
    env.env.trim_blocks = True
    env.env.lstrip_blocks = True
    return env


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response: HTMLResponse = templates().TemplateResponse(request, name, context, status_code=status_code)
    return response
