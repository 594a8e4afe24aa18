"""Creator Studio projects and their files (SQLite or PostgreSQL). Returns domain objects."""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from mmstudio.domain.codegen.types import GeneratedFile, Project, ProjectPage, ProjectStatus, Skipped
from mmstudio.errors import NotFound
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import CodegenFileRow, CodegenProjectRow


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _project(row: CodegenProjectRow, files: list[GeneratedFile] | None = None) -> Project:
    status: ProjectStatus = row.status  # type: ignore[assignment]  # written only from ProjectStatus
    return Project(
        id=row.id,
        name=row.name,
        description=row.description,
        framework=row.framework,
        target_type=row.target_type,
        model_requested=row.model_requested,
        status=status,
        created_at=utc(row.created_at),
        files=files or [],
        skipped=[Skipped(s.get("path"), str(s.get("reason", ""))) for s in row.skipped or []],
        model_used=row.model_used,
        model_name=row.model_name,
        latency_ms=row.latency_ms,
        attempts=list(row.attempts or []),
        error=row.error,
        raw_text=row.raw_text if files is not None else "",
        finished_at=utc(row.finished_at) if row.finished_at is not None else None,
        file_count=row.file_count,
    )


def _not_found(project_id: str) -> NotFound:
    return NotFound(f"no Creator Studio project with id {project_id!r}")


class CodegenRepository:
    """The `codegen_projects` and `codegen_files` tables."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def create(
        self, *, name: str, description: str, framework: str, target_type: str, model_requested: str | None
    ) -> Project:
        row = CodegenProjectRow(
            id=str(uuid.uuid4()),
            name=name,
            description=description,
            framework=framework,
            target_type=target_type,
            model_requested=model_requested,
            status="generating",
            attempts=[],
            skipped=[],
            raw_text="",
            file_count=0,
            created_at=utc_now(),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _project(row, [])

    async def save_text(self, project_id: str, raw_text: str) -> None:
        """What the model has written so far (so a crash loses nothing already generated)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(CodegenProjectRow).where(CodegenProjectRow.id == project_id).values(raw_text=raw_text)
            )

    async def finish(self, project: Project) -> None:
        """The project's final state and its files, in one transaction."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(CodegenFileRow).where(CodegenFileRow.project_id == project.id))
            session.add_all(
                CodegenFileRow(
                    project_id=project.id, position=i, path=f.path, language=f.language, content=f.content
                )
                for i, f in enumerate(project.files)
            )
            await session.execute(
                update(CodegenProjectRow)
                .where(CodegenProjectRow.id == project.id)
                .values(
                    status=project.status,
                    model_used=project.model_used,
                    model_name=project.model_name,
                    latency_ms=_finite(project.latency_ms),
                    attempts=project.attempts,
                    skipped=[{"path": s.path, "reason": s.reason} for s in project.skipped],
                    error=project.error,
                    raw_text=project.raw_text,
                    file_count=len(project.files),
                    finished_at=project.finished_at or utc_now(),
                )
            )

    async def get(self, project_id: str) -> Project:
        async with self._sessions() as session:
            row = await session.get(CodegenProjectRow, project_id)
            if row is None:
                raise _not_found(project_id)
            files = (
                await session.scalars(
                    select(CodegenFileRow)
                    .where(CodegenFileRow.project_id == project_id)
                    .order_by(CodegenFileRow.position)
                )
            ).all()
        return _project(row, [GeneratedFile(f.path, f.language, f.content) for f in files])

    async def list(self, *, limit: int, offset: int) -> ProjectPage:
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(CodegenProjectRow)) or 0
            rows = (
                await session.scalars(
                    select(CodegenProjectRow)
                    .order_by(CodegenProjectRow.created_at.desc(), CodegenProjectRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return ProjectPage([_project(r) for r in rows], total, limit, offset)

    async def delete(self, project_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(CodegenFileRow).where(CodegenFileRow.project_id == project_id))
            result = await session.execute(
                delete(CodegenProjectRow).where(CodegenProjectRow.id == project_id)
            )
            if not result.rowcount:
                raise _not_found(project_id)

    async def interrupt_unfinished(self, reason: str) -> int:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(CodegenProjectRow)
                .where(CodegenProjectRow.status == "generating")
                .values(status="interrupted", error=reason, finished_at=utc_now())
            )
        return int(result.rowcount or 0)
