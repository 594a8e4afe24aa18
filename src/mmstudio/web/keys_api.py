"""Gateway key administration: /api/admin/keys (create, list, revoke). Admin only once keys exist."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from mmstudio.domain.keys import GatewayKey
from mmstudio.web.auth import AdminDep
from mmstudio.web.deps import StudioDep

router = APIRouter(prefix="/api/admin/keys", tags=["admin"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, description="what the key is for, e.g. 'laptop'")
    admin: bool = Field(default=False, description="may manage keys (the first key always is)")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute for this key")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute for this key")


class KeyPublic(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    admin: bool
    rpm: int | None
    tpm: int | None
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
    key, raw = await studio.keys.create(body.name, admin=body.admin, rpm=body.rpm, tpm=body.tpm)
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
