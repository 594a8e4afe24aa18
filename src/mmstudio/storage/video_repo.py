"""The Video Studio's tables: projects (with one column per next-shot setting) and their clips.

Two tabs editing one project: a settings change writes only the columns it names, so different fields
never overwrite each other (last write wins per field). Every change of the clip order (add, reorder,
duplicate, delete, restore) first bumps the project's `order_version` in the same transaction: that
write takes SQLite's write lock or PostgreSQL's row lock before the order is read, so concurrent
changes apply one after the other and the order is never corrupted.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mmstudio.domain.video.projects import Clip, Project, ShotSettings
from mmstudio.errors import InvalidRequest, NotFound
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import VideoClipRow, VideoProjectRow

PROJECT_FIELDS = ("name", "aspect_ratio", "resolution", "selected_clip_id", "playhead_s")


def new_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_urlsafe(15)


def _project(row: VideoProjectRow, clips: Sequence[VideoClipRow] = ()) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        aspect_ratio=row.aspect_ratio,
        resolution=row.resolution,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        next_shot=ShotSettings(**{name: getattr(row, name) for name in ShotSettings.__slots__}),
        selected_clip_id=row.selected_clip_id,
        playhead_s=row.playhead_s,
        clips=tuple(_clip(c) for c in clips),
    )


def _clip(row: VideoClipRow) -> Clip:
    return Clip(
        id=row.id,
        project_id=row.project_id,
        position=row.position,
        job_id=row.job_id,
        asset_id=row.asset_id,
        settings=ShotSettings.from_dict(row.settings or {}),
        trim_in_s=row.trim_in_s,
        trim_out_s=row.trim_out_s,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        deleted_at=utc(row.deleted_at) if row.deleted_at is not None else None,
    )


class VideoProjectRepository:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    # -- projects ----------------------------------------------------------------------------------

    async def create(self, name: str, aspect_ratio: str, resolution: str, next_shot: ShotSettings) -> Project:
        now = utc_now()
        row = VideoProjectRow(
            id=new_id("vp"),
            name=name,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            created_at=now,
            updated_at=now,
            order_version=0,
            playhead_s=0.0,
            **next_shot.as_dict(),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _project(row)

    async def list(self) -> builtins.list[Project]:
        """Every project not deleted, the last changed first (without their clips)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(VideoProjectRow)
                .where(VideoProjectRow.deleted_at.is_(None))
                .order_by(VideoProjectRow.updated_at.desc(), VideoProjectRow.id)
            )
            return [_project(row) for row in rows]

    async def get(self, project_id: str, *, with_deleted_clips: bool = False) -> Project | None:
        async with self._sessions() as session:
            row = await session.get(VideoProjectRow, project_id)
            if row is None or row.deleted_at is not None:
                return None
            return _project(row, await self._clips(session, project_id, deleted=with_deleted_clips))

    async def deleted_clips(self, project_id: str) -> builtins.list[Clip]:
        """The project's deleted clips, the last deleted first (what undo restores)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(VideoClipRow)
                .where(VideoClipRow.project_id == project_id, VideoClipRow.deleted_at.is_not(None))
                .order_by(VideoClipRow.deleted_at.desc())
            )
            return [_clip(row) for row in rows]

    async def update(self, project_id: str, fields: Mapping[str, Any]) -> Project:
        """Write exactly the given project fields and next-shot settings (nothing else)."""
        allowed = {*PROJECT_FIELDS, *ShotSettings.__slots__}
        values = {k: v for k, v in fields.items() if k in allowed}
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(VideoProjectRow)
                .where(VideoProjectRow.id == project_id, VideoProjectRow.deleted_at.is_(None))
                .values(**values, updated_at=utc_now())
            )
            if not result.rowcount:
                raise _missing(project_id)
        project = await self.get(project_id)
        if project is None:
            raise _missing(project_id)
        return project

    async def delete(self, project_id: str) -> None:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(VideoProjectRow)
                .where(VideoProjectRow.id == project_id, VideoProjectRow.deleted_at.is_(None))
                .values(deleted_at=utc_now(), updated_at=utc_now())
            )
        if not result.rowcount:
            raise _missing(project_id)

    # -- clips -------------------------------------------------------------------------------------

    async def add_clip(
        self,
        project_id: str,
        *,
        settings: ShotSettings,
        job_id: str | None = None,
        asset_id: str | None = None,
        after: str | None = None,
    ) -> Clip:
        """A new clip at the end of the timeline (or right after the clip `after`), selected."""
        async with self._sessions() as session, session.begin():
            live = await self._lock_order(session, project_id)
            position = _slot_after(live, after)
            await _shift(session, live, position)
            row = _new_clip(project_id, position, job_id, asset_id, settings.as_dict())
            session.add(row)
            await _select(session, project_id, row.id)
        return _clip(row)

    async def update_clip(self, project_id: str, clip_id: str, fields: Mapping[str, Any]) -> Clip:
        """Trim points, the output asset or the job of a live clip."""
        values = {k: v for k, v in fields.items() if k in ("trim_in_s", "trim_out_s", "asset_id", "job_id")}
        async with self._sessions() as session, session.begin():
            row = await self._live_clip(session, project_id, clip_id)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utc_now()
            await _touch(session, project_id)
        return _clip(row)

    async def reorder(self, project_id: str, clip_ids: Sequence[str]) -> Project:
        """The live clips in the order given: exactly the project's live clip ids, each once."""
        async with self._sessions() as session, session.begin():
            live = await self._lock_order(session, project_id)
            known = {row.id: row for row in live}
            unknown = [c for c in clip_ids if c not in known]
            if unknown:
                raise NotFound(f"unknown clip id(s): {', '.join(unknown)}", field="clip_ids")
            if len(set(clip_ids)) != len(clip_ids) or set(clip_ids) != set(known):
                missing = sorted(set(known) - set(clip_ids))
                raise InvalidRequest(
                    "clip_ids must list every clip of the timeline exactly once"
                    + (f"; missing: {', '.join(missing)}" if missing else "; some are repeated"),
                    field="clip_ids",
                )
            for position, clip_id in enumerate(clip_ids):
                known[clip_id].position = position
        project = await self.get(project_id)
        assert project is not None
        return project

    async def duplicate_clip(self, project_id: str, clip_id: str) -> Clip:
        """A copy of a clip (same output, settings and trim) right after it, selected."""
        async with self._sessions() as session, session.begin():
            live = await self._lock_order(session, project_id)
            original = next((row for row in live if row.id == clip_id), None)
            if original is None:
                raise _missing_clip(clip_id)
            position = _slot_after(live, clip_id)
            await _shift(session, live, position)
            row = _new_clip(
                project_id, position, original.job_id, original.asset_id, dict(original.settings or {})
            )
            row.trim_in_s, row.trim_out_s = original.trim_in_s, original.trim_out_s
            session.add(row)
            await _select(session, project_id, row.id)
        return _clip(row)

    async def delete_clip(self, project_id: str, clip_id: str) -> Clip:
        """Soft: the clip leaves the timeline and keeps its row, so `restore_clip` undoes it."""
        async with self._sessions() as session, session.begin():
            live = await self._lock_order(session, project_id)
            row = next((r for r in live if r.id == clip_id), None)
            if row is None:
                raise _missing_clip(clip_id)
            row.deleted_at = row.updated_at = utc_now()
            project = await session.get(VideoProjectRow, project_id)
            if project is not None and project.selected_clip_id == clip_id:
                project.selected_clip_id = None
        return _clip(row)

    async def restore_clip(self, project_id: str, clip_id: str) -> Clip:
        """A deleted clip back where it was (the clips from its place on move one along)."""
        async with self._sessions() as session, session.begin():
            live = await self._lock_order(session, project_id)
            row = await session.get(VideoClipRow, clip_id)
            if row is None or row.project_id != project_id or row.deleted_at is None:
                raise NotFound(f"no deleted clip {clip_id!r} in this project")
            position = min(row.position, len(live))
            ordered = sorted(live, key=lambda r: (r.position, r.created_at))
            for index, other in enumerate(ordered):
                other.position = index if index < position else index + 1
            row.position = position
            row.deleted_at = None
            row.updated_at = utc_now()
        return _clip(row)

    async def clips_of_job(self, job_id: str) -> builtins.list[Clip]:
        async with self._sessions() as session:
            rows = await session.scalars(select(VideoClipRow).where(VideoClipRow.job_id == job_id))
            return [_clip(row) for row in rows]

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    async def _clips(
        session: AsyncSession, project_id: str, *, deleted: bool = False
    ) -> builtins.list[VideoClipRow]:
        statement = select(VideoClipRow).where(VideoClipRow.project_id == project_id)
        if not deleted:
            statement = statement.where(VideoClipRow.deleted_at.is_(None))
        rows = await session.scalars(statement.order_by(VideoClipRow.position, VideoClipRow.created_at))
        return list(rows)

    async def _lock_order(self, session: AsyncSession, project_id: str) -> builtins.list[VideoClipRow]:
        """Take the project's order for this transaction (a write first, see the module docstring) and
        answer its live clips in order."""
        result = await session.execute(
            update(VideoProjectRow)
            .where(VideoProjectRow.id == project_id, VideoProjectRow.deleted_at.is_(None))
            .values(order_version=VideoProjectRow.order_version + 1, updated_at=utc_now())
            .returning(VideoProjectRow.id)
        )
        if result.first() is None:
            raise _missing(project_id)
        return await self._clips(session, project_id)

    async def _live_clip(self, session: AsyncSession, project_id: str, clip_id: str) -> VideoClipRow:
        row = await session.get(VideoClipRow, clip_id)
        if row is None or row.project_id != project_id or row.deleted_at is not None:
            raise _missing_clip(clip_id)
        return row


def _new_clip(
    project_id: str, position: int, job_id: str | None, asset_id: str | None, settings: dict[str, Any]
) -> VideoClipRow:
    now = utc_now()
    return VideoClipRow(
        id=new_id("clip"),
        project_id=project_id,
        position=position,
        job_id=job_id,
        asset_id=asset_id,
        settings=settings,
        trim_in_s=0.0,
        trim_out_s=None,
        created_at=now,
        updated_at=now,
    )


def _slot_after(live: Sequence[VideoClipRow], after: str | None) -> int:
    """The position a new clip takes: after the clip `after`, or at the end."""
    ordered = sorted(live, key=lambda r: (r.position, r.created_at))
    if after is None:
        return (max((r.position for r in ordered), default=-1)) + 1
    for index, row in enumerate(ordered):
        if row.id == after:
            return index + 1
    raise _missing_clip(after)


async def _shift(session: AsyncSession, live: Sequence[VideoClipRow], position: int) -> None:
    """Renumber the live clips 0.. in their order, leaving `position` free."""
    ordered = sorted(live, key=lambda r: (r.position, r.created_at))
    for index, row in enumerate(ordered):
        row.position = index if index < position else index + 1
    await session.flush()


async def _select(session: AsyncSession, project_id: str, clip_id: str) -> None:
    await session.execute(
        update(VideoProjectRow).where(VideoProjectRow.id == project_id).values(selected_clip_id=clip_id)
    )


async def _touch(session: AsyncSession, project_id: str) -> None:
    await session.execute(
        update(VideoProjectRow).where(VideoProjectRow.id == project_id).values(updated_at=utc_now())
    )


def _missing(project_id: str) -> NotFound:
    return NotFound(f"no video project {project_id!r}")


def _missing_clip(clip_id: str) -> NotFound:
    return NotFound(f"no clip {clip_id!r} on this timeline")
