"""Stored gateway keys: only their SHA-256 hashes, never the keys. Returns domain GatewayKey objects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from mmstudio.domain.keys import GatewayKey
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.tables import GatewayKeyRow


def _key(row: GatewayKeyRow) -> GatewayKey:
    return GatewayKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        admin=row.admin,
        rpm=row.rpm,
        tpm=row.tpm,
        tiers=tuple(row.tiers) if row.tiers is not None else None,
        created_at=utc(row.created_at),
        revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None,
    )


class KeyRepository:
    """The `gateway_keys` table."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def add(
        self,
        *,
        name: str,
        key_hash: str,
        prefix: str,
        admin: bool,
        rpm: int | None,
        tpm: int | None,
        tiers: tuple[str, ...] | None = None,
    ) -> GatewayKey:
        row = GatewayKeyRow(
            id=str(uuid.uuid4()),
            name=name,
            key_hash=key_hash,
            prefix=prefix,
            admin=admin,
            rpm=rpm,
            tpm=tpm,
            tiers=list(tiers) if tiers is not None else None,
            created_at=utc_now(),
            revoked_at=None,
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _key(row)

    async def get_by_hash(self, key_hash: str) -> GatewayKey | None:
        """The key with this hash, revoked or not (the caller decides)."""
        async with self._sessions() as session:
            row = await session.scalar(select(GatewayKeyRow).where(GatewayKeyRow.key_hash == key_hash))
        return _key(row) if row is not None else None

    async def list_all(self) -> list[GatewayKey]:
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(GatewayKeyRow).order_by(GatewayKeyRow.created_at, GatewayKeyRow.id)
                )
            ).all()
        return [_key(row) for row in rows]

    async def revoke(self, key_id: str, at: datetime | None = None) -> GatewayKey | None:
        """Set `revoked_at` (once: revoking again keeps the first time). None if there is no such key."""
        async with self._sessions() as session, session.begin():
            # One conditional UPDATE, so two processes revoking at once agree on the time.
            await session.execute(
                update(GatewayKeyRow)
                .where(GatewayKeyRow.id == key_id, GatewayKeyRow.revoked_at.is_(None))
                .values(revoked_at=at or utc_now())
            )
            row = await session.scalar(select(GatewayKeyRow).where(GatewayKeyRow.id == key_id))
            return _key(row) if row is not None else None

    async def count_active(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(GatewayKeyRow).where(GatewayKeyRow.revoked_at.is_(None))
            )
        return int(count or 0)
