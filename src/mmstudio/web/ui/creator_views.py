"""Creator Studio's page fragments (under /api/ui/codegen): the model picker, the history, and one
project as a file tree with its files highlighted.

Generating goes through the JSON/SSE API (`/api/codegen`); these routes only render what is stored.
Generated code is shown as text, never run: Pygments escapes it and nothing here is an iframe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.util import ClassNotFound

from mmstudio.domain.codegen.catalog import FRAMEWORKS, TARGET_TYPES
from mmstudio.domain.codegen.types import GeneratedFile, Project
from mmstudio.web.bodies import MAX_OFFSET
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import active_view, chat_views, grouped
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/codegen", include_in_schema=False)

HISTORY_PAGE = 20
_FORMATTER = HtmlFormatter(nowrap=True)
# Languages Pygments knows under another name (Svelte files are HTML with script and style).
_ALIASES = {
    "svelte": "html",
    "shell": "bash",
    "sh": "bash",
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
}


@dataclass
class Folder:
    """A folder of the file tree: its sub-folders and its files, both sorted by name."""

    name: str
    path: str
    folders: list[Folder] = field(default_factory=list)
    files: list[GeneratedFile] = field(default_factory=list)


def file_tree(files: list[GeneratedFile]) -> Folder:
    """The folders and files of `files` (paths are relative POSIX paths), folders first."""
    root = Folder("", "")
    index: dict[str, Folder] = {"": root}
    for item in files:
        parts = item.path.split("/")
        parent = root
        for depth in range(1, len(parts)):
            path = "/".join(parts[:depth])
            if path not in index:
                index[path] = Folder(parts[depth - 1], path)
                parent.folders.append(index[path])
            parent = index[path]
        parent.files.append(item)

    def tidy(folder: Folder) -> None:
        folder.folders.sort(key=lambda f: f.name.lower())
        folder.files.sort(key=lambda f: f.path.lower())
        for sub in folder.folders:
            tidy(sub)

    tidy(root)
    return root


def _lexer(file: GeneratedFile) -> Lexer | None:
    # Keep the text as written (no stripped or added newlines): copying the shown code copies the file.
    language = (file.language or "").strip().lower()
    name = _ALIASES.get(language, language)
    if name and name != "text":
        try:
            return get_lexer_by_name(name, stripnl=False, ensurenl=False)
        except ClassNotFound:
            pass
    try:
        return get_lexer_for_filename(file.path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def highlighted(file: GeneratedFile) -> str:
    """The file's code as HTML: Pygments' token spans, or the escaped text when no lexer fits."""
    lexer = _lexer(file)
    return highlight(file.content, lexer, _FORMATTER) if lexer is not None else escape(file.content)


def size(value: int) -> str:
    if value < 1000:
        return f"{value} B"
    if value < 1_000_000:
        return f"{value / 1000:.1f} kB"
    return f"{value / 1_000_000:.1f} MB"


def framework_label(value: str) -> str:
    found = FRAMEWORKS.get(value)
    return found.label if found else value


def target_label(value: str) -> str:
    found = TARGET_TYPES.get(value)
    return found.label if found else value


def _names(studio: Any) -> dict[str, str]:
    """Model id → display name (a model that is gone since keeps its stored name or id)."""
    return {v.entry.id: v.entry.display_name for v in studio.registry.views()}


@router.get("/models", response_class=HTMLResponse)
async def models(
    request: Request,
    studio: StudioDep,
    model: Annotated[str | None, Query(max_length=400)] = None,
) -> HTMLResponse:
    """The form's model <select>: the active model first (the default), then every chat model."""
    active = active_view(studio)
    return render(
        request,
        "partials/creator_models.html",
        model_groups=grouped(chat_views(studio)),
        active=active,
        selected=model or "",
    )


@router.get("/history", response_class=HTMLResponse)
async def history(
    request: Request,
    studio: StudioDep,
    limit: Annotated[int, Query(ge=1, le=100)] = HISTORY_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    current: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """Earlier projects, newest first, `limit` at a time (a "Show more" button loads the next ones)."""
    page = await studio.codegen.list_projects(limit=limit, offset=offset)
    shown = offset + len(page.items)
    return render(
        request,
        "partials/creator_history.html",
        projects=page.items,
        total=page.total,
        offset=offset,
        more=shown < page.total,
        next_offset=shown,
        limit=limit,
        current=current,
        names=_names(studio),
        framework_label=framework_label,
        target_label=target_label,
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
async def project(request: Request, studio: StudioDep, project_id: str) -> HTMLResponse:
    """One project: what was asked, which model answered (or why none did), the tree and the files."""
    found: Project = await studio.codegen.get(project_id)
    names = _names(studio)
    # Highlighting is CPU work (a 2 MB project takes seconds): off the event loop, so streams and
    # other requests go on meanwhile.
    return await asyncio.to_thread(
        render,
        request,
        "partials/creator_project.html",
        project=found,
        tree=file_tree(found.files),
        model_name=found.model_name or names.get(found.model_used or "", found.model_used),
        names=names,
        highlighted=highlighted,
        size=size,
        framework_label=framework_label,
        target_label=target_label,
    )
