"""The `media_assets` table (SQLite or PostgreSQL). Returns domain objects."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from mmstudio.domain.media.types import MediaAsset, MediaKind, MediaPage, Recipe
from mmstudio.storage._time import utc
from mmstudio.storage.tables import MediaAssetRow


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _asset(row: MediaAssetRow) -> MediaAsset:
    kind: MediaKind = row.kind  # type: ignore[assignment]  # written only from MediaKind
    return MediaAsset(
        id=row.id,
        kind=kind,
        mime=row.mime,
        width=row.width,
        height=row.height,
        bytes=row.bytes,
        sha256=row.sha256,
        created_at=utc(row.created_at),
        recipe=Recipe.from_dict(row.recipe) if row.recipe else None,
        attempts=tuple(row.attempts or ()),
        latency_ms=row.latency_ms,
        cost_usd=row.cost_usd,
        parent_id=row.parent_id,
        tier=row.tier,
        filename=row.filename,
        duration_s=row.duration_s,
        fps=row.fps,
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class MediaRepository:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def add(self, asset: MediaAsset) -> None:
        recipe = asset.recipe
        row = MediaAssetRow(
            id=asset.id,
            kind=asset.kind,
            mime=asset.mime,
            width=asset.width,
            height=asset.height,
            bytes=asset.bytes,
            sha256=asset.sha256,
            created_at=asset.created_at,
            recipe=recipe.to_dict() if recipe is not None else None,
            attempts=[dict(a) for a in asset.attempts],
            latency_ms=_finite(asset.latency_ms),
            cost_usd=_finite(asset.cost_usd),
            parent_id=asset.parent_id,
            tier=asset.tier,
            filename=asset.filename,
            model_used=recipe.model_used if recipe is not None else None,
            provider=recipe.provider if recipe is not None else None,
            prompt=recipe.prompt if recipe is not None else None,
            duration_s=_finite(asset.duration_s),
            fps=_finite(asset.fps),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)

    async def get(self, asset_id: str) -> MediaAsset | None:
        async with self._sessions() as session:
            row = await session.get(MediaAssetRow, asset_id)
        return _asset(row) if row is not None else None

    async def get_many(self, asset_ids: Iterable[str]) -> dict[str, MediaAsset]:
        wanted = sorted(set(asset_ids))
        if not wanted:
            return {}
        async with self._sessions() as session:
            rows = (await session.scalars(select(MediaAssetRow).where(MediaAssetRow.id.in_(wanted)))).all()
        return {asset.id: asset for asset in map(_asset, rows)}

    async def list(
        self,
        *,
        kind: MediaKind,
        limit: int,
        offset: int,
        tier: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        q: str | None = None,
        with_uploads: bool = False,
    ) -> MediaPage:
        """Newest first; `q` matches words anywhere in the prompt, case-insensitively, each word.
        `with_uploads`: uploaded images too (kind ``upload`` of an image type)."""

        def where(query: Select[Any]) -> Select[Any]:
            if with_uploads:
                uploaded = (MediaAssetRow.kind == "upload") & MediaAssetRow.mime.like("image/%")
                query = query.where((MediaAssetRow.kind == kind) | uploaded)
            else:
                query = query.where(MediaAssetRow.kind == kind)
            query = query.where(MediaAssetRow.tier.is_(None) if tier is None else MediaAssetRow.tier == tier)
            if model:
                query = query.where(MediaAssetRow.model_used == model)
            if provider:
                query = query.where(MediaAssetRow.provider == provider)
            for word in (q or "").split():
                query = query.where(MediaAssetRow.prompt.ilike(_like(word), escape="\\"))
            return query

        async with self._sessions() as session:
            total = await session.scalar(where(select(func.count()).select_from(MediaAssetRow))) or 0
            rows = (
                await session.scalars(
                    where(select(MediaAssetRow))
                    .order_by(MediaAssetRow.created_at.desc(), MediaAssetRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
        return MediaPage([_asset(r) for r in rows], int(total), limit, offset)

    async def delete(self, asset_id: str) -> MediaAsset | None:
        """Delete the row; returns it, and None when there was none."""
        async with self._sessions() as session, session.begin():
            row = await session.get(MediaAssetRow, asset_id)
            if row is None:
                return None
            asset = _asset(row)
            await session.execute(delete(MediaAssetRow).where(MediaAssetRow.id == asset_id))
        return asset

    async def sha_in_use(self, sha256: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(MediaAssetRow.id).where(MediaAssetRow.sha256 == sha256).limit(1)
            )
        return found is not None
