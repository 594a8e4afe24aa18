"""Gateway key administration: /api/admin/keys (create, list, revoke). Admin only once keys exist."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from mmstudio.domain.keys import GatewayKey
from mmstudio.web.auth import AdminDep
from mmstudio.web.constraints import RequestModel, text
from mmstudio.web.deps import StudioDep

router = APIRouter(prefix="/api/admin/keys", tags=["admin"])


class KeyCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # a key scoped to tiers is never an admin key
            "if": {"required": ["admin"], "properties": {"admin": {"const": True}}},
            "then": {"properties": {"tiers": {"type": "null"}}},
        },
    )

    name: Annotated[str, text("name cannot be empty", max_length=100)] = Field(
        description="what the key is for, e.g. 'laptop'"
    )
    admin: bool = Field(default=False, description="may manage keys (the first key always is)")
    rpm: int | None = Field(default=None, ge=1, le=10**9, description="requests per minute for this key")
    tpm: int | None = Field(default=None, ge=1, le=10**12, description="tokens per minute for this key")
    tiers: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="story tiers this key is scoped to: it reaches only their pages and API",
    )


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    admin: bool
    rpm: int | None
    tpm: int | None
    tiers: list[str] | None = None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: GatewayKey) -> KeyPublic:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            admin=key.admin,
            rpm=key.rpm,
            tpm=key.tpm,
            tiers=list(key.tiers) if key.tiers is not None else None,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself: shown this once, store it now")


class KeyList(BaseModel):
    keys: list[KeyPublic]


@router.post("", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, studio: StudioDep, _admin: AdminDep, response: Response) -> KeyCreated:
    """Create a key. The response is the only time the key is shown; only its hash is stored."""
    tiers = tuple(dict.fromkeys(body.tiers)) if body.tiers is not None else None
    for tier in tiers or ():
        studio.stories.tiers.get(tier)  # an unknown tier is refused (as not found)
    key, raw = await studio.keys.create(body.name, admin=body.admin, rpm=body.rpm, tpm=body.tpm, tiers=tiers)
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(**KeyPublic.of(key).model_dump(), key=raw)


@router.get("", response_model=KeyList)
async def list_keys(studio: StudioDep, _admin: AdminDep) -> KeyList:
    """Every stored key, revoked ones included (with `revoked_at`); never the keys themselves."""
    return KeyList(keys=[KeyPublic.of(k) for k in await studio.keys.list()])


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, studio: StudioDep, _admin: AdminDep) -> Response:
    """Revoke a key: it stops working at once here, and within seconds on other processes."""
    await studio.keys.revoke(key_id)
    return Response(status_code=204)
