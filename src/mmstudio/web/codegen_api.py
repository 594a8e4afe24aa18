"""Creator Studio API (`/api/codegen`): generate a project's files with the user's model, list and
download projects.

`POST /api/codegen` waits and answers with the project, or with `"stream": true` streams
server-sent events: `project`, `plan`, then per model `attempt` (and `attempt_failed`), `text` as
it arrives, `file` as each file is complete, and a final `done` or `error`. The generation belongs
to the service: a client that disconnects stops listening; the project is still finished and
stored (`GET /api/codegen/projects/{id}`, or `/events` to follow it again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ConfigDict, Field

from mmstudio.domain.codegen import catalog
from mmstudio.domain.codegen.service import (
    MAX_DESCRIPTION,
    MAX_NAME,
    CodegenEvent,
    CodegenRequest,
    CodegenService,
)
from mmstudio.domain.codegen.types import GeneratedFile, Project
from mmstudio.errors import StudioError
from mmstudio.web.auth import get_principal
from mmstudio.web.bodies import PAGE_PARAMETERS, body_schema, int_param, parse_body
from mmstudio.web.constraints import RequestModel, one_of, text
from mmstudio.web.deps import StudioDep
from mmstudio.web.errors import error_body, render_error
from mmstudio.web.gateway import route_options
from mmstudio.web.sse import sse_event, sse_response

router = APIRouter(prefix="/api/codegen", tags=["creator studio"])


class CodegenIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    projectName: Annotated[
        str, text("projectName is empty: give the project a name", max_length=MAX_NAME)
    ] = Field(description=f"a name for the project (1 to {MAX_NAME} characters)")
    description: Annotated[
        str, text("description is empty: describe what to build", max_length=MAX_DESCRIPTION)
    ] = Field(description="what to build")
    framework: Annotated[str, one_of(tuple(catalog.FRAMEWORKS), "framework")]
    targetType: Annotated[str, one_of(tuple(catalog.TARGET_TYPES), "targetType")]
    model: str | None = Field(default=None, description="model id, name or alias; default: the active model")
    stream: bool = Field(default=False, description="true: server-sent events while generating")


def user_of(request: Request) -> str:
    """Whom the per-user rate limit counts: the gateway key, else the client's address."""
    principal = get_principal(request)
    if principal is not None and principal.key_id:
        return f"key:{principal.key_id}"
    return f"addr:{request.client.host if request.client else 'unknown'}"


# -- routes ------------------------------------------------------------------------------------


@router.get("/options")
async def options() -> JSONResponse:
    """The frameworks and target types a generation can ask for."""
    return JSONResponse(
        {
            "frameworks": [
                {"id": f.id, "label": f.label, "language": f.language} for f in catalog.FRAMEWORKS.values()
            ],
            "targetTypes": [
                {"id": t.id, "label": t.label, "description": t.guidance}
                for t in catalog.TARGET_TYPES.values()
            ],
        }
    )


@router.post("", response_model=None, openapi_extra=body_schema(CodegenIn))
async def generate(request: Request, studio: StudioDep) -> Response:
    """Generate a project's files: the active (or named) model first, then the cloud fallback chain."""
    body = await parse_body(request, CodegenIn)
    service: CodegenService = studio.codegen
    project = await service.start(
        CodegenRequest(body.projectName, body.description, body.framework, body.targetType, body.model),
        user=user_of(request),
        options=route_options(request, route="codegen"),
    )
    headers = {"x-mmstudio-project-id": project.id}
    if body.stream:
        return sse_response(_frames(service, project.id), headers)
    try:
        finished = await service.result(project.id)
    except StudioError as exc:
        stored = await service.get(project.id)
        extra: dict[str, object] = {
            "projectId": project.id,
            "attempts": stored.attempts,
            "status": stored.status,
        }
        return render_error(request.url.path, exc, extra=extra, headers=headers)
    return JSONResponse(project_json(finished), headers=headers)


@router.get("/projects", openapi_extra=PAGE_PARAMETERS)
async def list_projects(request: Request, studio: StudioDep) -> JSONResponse:
    """Earlier projects, newest first (`limit` 1 to 100, default 20; `offset`)."""
    service: CodegenService = studio.codegen
    page = await service.list_projects(
        limit=int_param(request, "limit", 20), offset=int_param(request, "offset", 0)
    )
    return JSONResponse(
        {
            "items": [summary_json(p) for p in page.items],
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
        }
    )


@router.get("/projects/{project_id}")
async def get_project(project_id: str, studio: StudioDep) -> JSONResponse:
    """A project with its files (live while it generates), attempts and what the parser left out."""
    service: CodegenService = studio.codegen
    project = await service.get(project_id)
    return JSONResponse({**project_json(project), "rawText": project.raw_text})


@router.get("/projects/{project_id}/events")
async def follow_project(project_id: str, studio: StudioDep) -> StreamingResponse:
    """The project's events from its start (live while it generates, else as stored)."""
    service: CodegenService = studio.codegen
    await service.get(project_id)  # an unknown id is a 404 before the stream starts
    return sse_response(_frames(service, project_id), {"x-mmstudio-project-id": project_id})


@router.get(
    "/projects/{project_id}/zip",
    responses={200: {"description": "the project's files", "content": {"application/zip": {}}}},
)
async def download(project_id: str, studio: StudioDep) -> Response:
    """The project's files as a ZIP archive."""
    service: CodegenService = studio.codegen
    name, data = await service.archive(project_id)
    disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
    return Response(data, media_type="application/zip", headers={"Content-Disposition": disposition})


@router.delete("/projects/{project_id}", status_code=204)
async def delete_project(project_id: str, studio: StudioDep) -> Response:
    """Forget a project and its files (a running generation is stopped)."""
    service: CodegenService = studio.codegen
    await service.delete(project_id)
    return Response(status_code=204)


# -- rendering ---------------------------------------------------------------------------------


async def _frames(service: CodegenService, project_id: str) -> AsyncIterator[bytes]:
    async for event in service.listen(project_id):
        yield sse_event(event.type, event_json(event))


def event_json(event: CodegenEvent) -> dict[str, Any]:
    if event.type == "project" and event.project is not None:
        p = event.project
        return {
            "projectId": p.id,
            "name": p.name,
            "framework": p.framework,
            "targetType": p.target_type,
            "createdAt": p.created_at.isoformat(),
        }
    if event.type == "plan":
        return {"candidates": list(event.candidates), "skipped": list(event.skipped)}
    if event.type == "attempt":
        return {
            "model": event.model,
            "modelName": event.model_name,
            "kind": event.model_kind,
            "index": event.number,
            "timeoutS": event.timeout,
        }
    if event.type == "attempt_failed":
        attempt = event.attempt or {}
        return {
            "model": event.model,
            "modelName": event.model_name,
            "kind": event.model_kind,
            "error": attempt.get("error"),
            "errorKind": attempt.get("kind"),
            "latencyMs": attempt.get("latencyMs"),
        }
    if event.type == "text":
        return {"text": event.text}
    if event.type == "file" and event.file is not None:
        return file_json(event.file)
    if event.type == "done" and event.project is not None:
        return project_json(event.project)
    error = event.error or StudioError("the generation failed")
    _status, body = error_body(error)
    project = event.project
    return {
        **body,
        "attempts": project.attempts if project is not None else body.get("attempts", []),
        "projectId": event.project_id,
        "status": project.status if project is not None else "failed",
        "files": [file_json(f) for f in project.files] if project is not None else [],
    }


def file_json(file: GeneratedFile) -> dict[str, Any]:
    return {"path": file.path, "language": file.language, "content": file.content, "size": file.size}


def summary_json(project: Project) -> dict[str, Any]:
    return {
        "projectId": project.id,
        "name": project.name,
        "description": project.description[:300],
        "framework": project.framework,
        "targetType": project.target_type,
        "status": project.status,
        "modelUsed": project.model_used,
        "modelName": project.model_name,
        "latencyMs": project.latency_ms,
        "fileCount": project.file_count,
        "createdAt": project.created_at.isoformat(),
        "error": project.error,
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        "projectId": project.id,
        "name": project.name,
        "description": project.description,
        "framework": project.framework,
        "targetType": project.target_type,
        "status": project.status,
        "files": [file_json(f) for f in project.files],
        "skipped": [{"path": s.path, "reason": s.reason} for s in project.skipped],
        "modelRequested": project.model_requested,
        "modelUsed": project.model_used,
        "modelName": project.model_name,
        "latencyMs": project.latency_ms,
        "attempts": project.attempts,
        "error": project.error,
        "createdAt": project.created_at.isoformat(),
        "finishedAt": project.finished_at.isoformat() if project.finished_at else None,
        "zipUrl": f"/api/codegen/projects/{project.id}/zip",
    }
