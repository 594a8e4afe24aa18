"""Repositories: the only code that touches table rows. They return domain objects."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from mmstudio.domain.types import ModelUsage, Platform, RegisteredEndpoint, RegisteredModel
from mmstudio.errors import Conflict, InvalidRequest
from mmstudio.storage._time import utc, utc_now
from mmstudio.storage.secrets import SecretBox
from mmstudio.storage.tables import EndpointRow, ModelUsageRow, PreferenceRow, RegisteredModelRow


def _aware(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


class EndpointRepository:
    """User-registered endpoints and the models named on them."""

    def __init__(self, sessions: async_sessionmaker[Any], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    async def list_all(self) -> list[RegisteredEndpoint]:
        async with self._sessions() as session:
            endpoints = (await session.scalars(select(EndpointRow).order_by(EndpointRow.created_at))).all()
            models = (
                await session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.created_at))
            ).all()
        by_endpoint: dict[str, list[RegisteredModel]] = {}
        for row in models:
            by_endpoint.setdefault(row.endpoint_id, []).append(_model(row))
        return [self._endpoint(row, by_endpoint.get(row.id, [])) for row in endpoints]

    async def add(
        self,
        *,
        provider_id: str,
        platform: Platform,
        base_url: str,
        api_key: str | None,
        models: Sequence[tuple[str, str, str | None]],
    ) -> RegisteredEndpoint:
        """Add an endpoint with its named models `(upstream_model, display_name, alias)`, or add the
        models to the existing endpoint of that provider id."""
        now = utc_now()
        async with self._sessions() as session, session.begin():
            row = await session.scalar(select(EndpointRow).where(EndpointRow.provider_id == provider_id))
            if row is None:
                row = EndpointRow(
                    id=str(uuid.uuid4()),
                    provider_id=provider_id,
                    platform=platform,
                    base_url=base_url,
                    api_key_encrypted=self._box.encrypt(api_key) if api_key else None,
                    created_at=now,
                )
                session.add(row)
            elif row.base_url != base_url:
                raise InvalidRequest(
                    f"provider name {provider_id!r} is already used for {row.base_url}; choose another name",
                    field="name",
                )
            elif api_key:
                row.api_key_encrypted = self._box.encrypt(api_key)
            existing = {
                m.upstream_model: m
                for m in (
                    await session.scalars(
                        select(RegisteredModelRow).where(RegisteredModelRow.endpoint_id == row.id)
                    )
                )
            }
            for upstream, display, alias in models:
                current = existing.get(upstream)
                if current is not None:
                    current.display_name = display
                    current.alias = alias
                else:
                    session.add(
                        RegisteredModelRow(
                            id=str(uuid.uuid4()),
                            endpoint_id=row.id,
                            upstream_model=upstream,
                            display_name=display,
                            alias=alias,
                            created_at=now,
                        )
                    )
            try:
                await session.flush()
            except IntegrityError as exc:
                raise Conflict(
                    "that alias is already used by another model; choose another", field="alias"
                ) from exc
            endpoint_id = row.id
        return next(e for e in await self.list_all() if e.id == endpoint_id)

    async def delete(self, endpoint_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(EndpointRow).where(EndpointRow.id == endpoint_id))
        return bool(getattr(result, "rowcount", 0))

    async def delete_model(self, model_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(RegisteredModelRow).where(RegisteredModelRow.id == model_id)
            )
        return bool(getattr(result, "rowcount", 0))

    def _endpoint(self, row: EndpointRow, models: list[RegisteredModel]) -> RegisteredEndpoint:
        return RegisteredEndpoint(
            id=row.id,
            provider_id=row.provider_id,
            platform=row.platform,  # type: ignore[arg-type]
            base_url=row.base_url,
            created_at=_aware(row.created_at) or utc_now(),
            api_key=self._box.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None,
            models=tuple(models),
        )


def _model(row: RegisteredModelRow) -> RegisteredModel:
    return RegisteredModel(
        id=row.id,
        endpoint_id=row.endpoint_id,
        upstream_model=row.upstream_model,
        display_name=row.display_name,
        alias=row.alias,
        created_at=_aware(row.created_at) or utc_now(),
    )


class UsageRepository:
    """Session tracking: successful generations per model and the last time each was used."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def record_session(self, model_id: str, at: datetime | None = None, count: int = 1) -> ModelUsage:
        """Count `count` successful generations; an upsert, so concurrent writers never collide."""
        when = at or utc_now()
        async with self._sessions() as session, session.begin():
            insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
            statement = (
                insert(ModelUsageRow)
                .values(model_id=model_id, sessions=count, last_used_at=when)
                .on_conflict_do_update(
                    index_elements=[ModelUsageRow.model_id],
                    set_={"sessions": ModelUsageRow.sessions + count, "last_used_at": when},
                )
                .returning(ModelUsageRow.sessions)
            )
            sessions = (await session.execute(statement)).scalar_one()
        return ModelUsage(sessions=sessions, last_used_at=when)

    async def all(self) -> dict[str, ModelUsage]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(ModelUsageRow))).all()
        return {
            r.model_id: ModelUsage(sessions=r.sessions, last_used_at=_aware(r.last_used_at)) for r in rows
        }


class PreferenceRepository:
    """Studio-wide preferences (the active model, ...): one JSON value per key."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def all(self) -> dict[str, Any]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(PreferenceRow))).all()
        return {r.key: r.value for r in rows}

    async def set(self, key: str, value: Any) -> None:
        """Upsert, so two writers never collide."""
        now = utc_now()
        async with self._sessions() as session, session.begin():
            insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
            await session.execute(
                insert(PreferenceRow)
                .values(key=key, value=value, updated_at=now)
                .on_conflict_do_update(
                    index_elements=[PreferenceRow.key], set_={"value": value, "updated_at": now}
                )
            )

    async def delete(self, key: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(PreferenceRow).where(PreferenceRow.key == key))
