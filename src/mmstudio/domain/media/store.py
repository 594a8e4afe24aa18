"""MediaStore: image bytes into the content-addressed files, their rows into the repository.

The bytes are written (temp file, fsync, rename) before the row that points at them, so a row never
names a missing or half-written file; a crash between the two leaves only an unreferenced file. All
Pillow work (checking, cleaning uploads, thumbnails, the recipe chunk) and all file I/O run in worker
threads, never on the event loop. Thumbnails are made once per image and then served from disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mmstudio.config import ImagesConfig
from mmstudio.domain.media import pictures, videos
from mmstudio.domain.media.types import EXTENSIONS, MediaAsset, MediaKind, MediaPage, Recipe
from mmstudio.errors import NotFound, PayloadTooLarge, UnsupportedMediaType


class MediaFileStore(Protocol):
    def prepare(self) -> int: ...
    def path(self, sha256: str, extension: str) -> Path: ...
    def thumb_path(self, sha256: str, side: int) -> Path: ...
    def put(self, data: bytes, extension: str) -> tuple[str, Path]: ...
    def put_thumb(self, sha256: str, side: int, data: bytes) -> Path: ...
    def read(self, sha256: str, extension: str) -> bytes: ...
    def remove(self, sha256: str, extension: str) -> None: ...
    def poster_path(self, sha256: str) -> Path: ...
    def put_poster(self, sha256: str, data: bytes) -> Path: ...
    def temp_path(self) -> Path: ...
    def commit(self, temp: Path, sha256: str, extension: str) -> Path: ...


class MediaRows(Protocol):
    async def add(self, asset: MediaAsset) -> None: ...
    async def get(self, asset_id: str) -> MediaAsset | None: ...
    async def get_many(self, asset_ids: Iterable[str]) -> dict[str, MediaAsset]: ...
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
    ) -> MediaPage: ...
    async def delete(self, asset_id: str) -> MediaAsset | None: ...
    async def sha_in_use(self, sha256: str) -> bool: ...


THUMB_CACHE_BYTES = 32 * 1024 * 1024  # about 2,000 gallery thumbnails
MAX_VIDEO_BYTES = 2_000_000_000  # a generated clip is tens of MB; this only stops a runaway download


def new_asset_id() -> str:
    """Random and unguessable (144 bits), URL-safe."""
    return secrets.token_urlsafe(18)


class MediaStore:
    def __init__(self, files: MediaFileStore, rows: MediaRows, config: ImagesConfig) -> None:
        self.files = files
        self.rows = rows
        self.config = config
        self._thumbs: dict[str, asyncio.Future[Path]] = {}
        # Thumbnails most recently served, in memory (the gallery asks for the same ones again and again).
        self._thumb_cache: OrderedDict[str, bytes] = OrderedDict()
        self._thumb_cache_bytes = 0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.config.max_upload_mb * 1_000_000)

    async def prepare(self) -> int:
        return await asyncio.to_thread(self.files.prepare)

    # -- writing ---------------------------------------------------------------------------------

    async def save_generated(
        self,
        data: bytes,
        mime: str | None = None,
        *,
        recipe: Recipe,
        attempts: tuple[Mapping[str, Any], ...] = (),
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        parent_id: str | None = None,
        tier: str | None = None,
        checked: pictures.Picture | None = None,
    ) -> MediaAsset:
        """Store a generated image with its recipe (PNGs also carry it in ``parameters`` and ``mmstudio``
        text chunks). Bytes that are not a whole image are refused before anything is written;
        `checked` is what `inspect` already said about these bytes."""
        max_pixels = self.config.max_pixels

        def prepare() -> tuple[pictures.Picture, str, Path]:
            picture = checked or pictures.inspect(data, max_pixels, "the generated image")
            stored = picture.data
            if picture.mime == "image/png":
                texts = {"parameters": recipe.parameters_text(), "mmstudio": json.dumps(recipe.to_dict())}
                stored = pictures.with_text(stored, texts)
            sha256, path = self.files.put(stored, EXTENSIONS[picture.mime])
            return pictures.Picture(stored, picture.mime, picture.width, picture.height), sha256, path

        picture, sha256, _path = await asyncio.to_thread(prepare)
        asset = MediaAsset(
            id=new_asset_id(),
            kind="image",
            mime=picture.mime,
            width=picture.width,
            height=picture.height,
            bytes=len(picture.data),
            sha256=sha256,
            created_at=_now(),
            recipe=recipe,
            attempts=tuple(attempts),
            latency_ms=latency_ms,
            cost_usd=cost_usd,
            parent_id=parent_id,
            tier=tier,
        )
        await self.rows.add(asset)
        return asset

    async def save_upload(self, data: bytes, filename: str, *, tier: str | None = None) -> MediaAsset:
        """Store an uploaded photo: checked (415 not an image, 413 too big, 400 a decompression bomb),
        turned upright by its EXIF orientation and stripped of its metadata."""
        if len(data) > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"{filename} is {len(data) / 1_000_000:.1f} MB; uploads are limited to "
                f"{self.config.max_upload_mb:g} MB (images.max_upload_mb)",
                field="file",
            )
        if not data:
            raise UnsupportedMediaType(
                f"{filename} is empty; send a PNG, JPEG, WebP or GIF image", field="file"
            )
        if videos.looks_like_video(data):  # an MP4, MOV or WebM: a clip for the Video Studio
            return await self.save_video(_one(data), recipe=None, tier=tier, filename=filename)
        max_pixels = self.config.max_pixels

        def prepare() -> tuple[pictures.Picture, str]:
            picture = pictures.clean_upload(data, max_pixels, filename)
            sha256, _ = self.files.put(picture.data, EXTENSIONS[picture.mime])
            return picture, sha256

        picture, sha256 = await asyncio.to_thread(prepare)
        asset = MediaAsset(
            id=new_asset_id(),
            kind="upload",
            mime=picture.mime,
            width=picture.width,
            height=picture.height,
            bytes=len(picture.data),
            sha256=sha256,
            created_at=_now(),
            tier=tier,
            filename=Path(filename).name[:300] or "upload",
        )
        await self.rows.add(asset)
        return asset

    async def save_video(
        self,
        chunks: AsyncIterator[bytes],
        *,
        recipe: Recipe | None,
        attempts: tuple[Mapping[str, Any], ...] = (),
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        parent_id: str | None = None,
        tier: str | None = None,
        max_bytes: int = MAX_VIDEO_BYTES,
        filename: str | None = None,
    ) -> MediaAsset:
        """Store a video as it downloads: streamed to a temp file (hashed on the way), its size and type
        checked (PyAV), its poster frame made, then fsynced and renamed under its sha256. A download
        that breaks or is not a video leaves nothing behind (the error is the caller's to retry)."""
        temp = self.files.temp_path()
        digest = hashlib.sha256()
        size = 0
        try:
            handle = await asyncio.to_thread(open, temp, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(
                            f"the video is over {max_bytes / 1_000_000:g} MB; refused", field="file"
                        )
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            if size == 0:
                raise UnsupportedMediaType("the video download was empty", field="file")
            sha256 = digest.hexdigest()

            def finish() -> videos.VideoInfo:
                info = videos.probe(temp)
                self.files.put_poster(sha256, videos.poster(temp))
                self.files.commit(temp, sha256, EXTENSIONS[info.mime])
                return info

            info = await asyncio.to_thread(finish)
        except BaseException:
            await asyncio.to_thread(temp.unlink, True)
            raise
        asset = MediaAsset(
            id=new_asset_id(),
            kind="video",
            mime=info.mime,
            width=info.width,
            height=info.height,
            bytes=size,
            sha256=sha256,
            created_at=_now(),
            recipe=recipe,
            attempts=tuple(attempts),
            latency_ms=latency_ms,
            cost_usd=cost_usd,
            parent_id=parent_id,
            tier=tier,
            filename=Path(filename).name[:300] or "upload" if filename is not None else None,
            duration_s=info.duration_s,
            fps=info.fps,
        )
        await self.rows.add(asset)
        return asset

    def scratch_path(self) -> Path:
        """A fresh temp file inside the media store (same file system: made files are renamed in)."""
        return self.files.temp_path()

    async def save_video_file(self, path: Path, *, recipe: Recipe) -> MediaAsset:
        """Store a video this process made (an export) as `save_video` stores a download; `path` is
        left for the caller to remove."""

        async def chunks() -> AsyncIterator[bytes]:
            handle = await asyncio.to_thread(open, path, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, 1 << 20):
                    yield chunk
            finally:
                await asyncio.to_thread(handle.close)

        return await self.save_video(chunks(), recipe=recipe, max_bytes=1 << 40)

    async def poster(self, asset: MediaAsset) -> Path:
        path = self.files.poster_path(asset.sha256)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"the poster of media {asset.id} is missing from the media store")
        return path

    async def inspect(self, data: bytes, what: str = "the generated image") -> pictures.Picture:
        """What image `data` is (type, size), off the event loop; not a whole image raises
        `UnsupportedMediaType`, over `images.max_pixels` raises `InvalidRequest`."""
        return await asyncio.to_thread(pictures.inspect, data, self.config.max_pixels, what)

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, asset_id: str) -> MediaAsset | None:
        if not asset_id or len(asset_id) > 40:
            return None
        return await self.rows.get(asset_id)

    async def get_many(self, asset_ids: Iterable[str]) -> dict[str, MediaAsset]:
        """The assets that exist among `asset_ids`, by id (one query)."""
        return await self.rows.get_many(i for i in asset_ids if i and len(i) <= 40)

    async def read_path(self, asset: MediaAsset) -> Path:
        path = self.files.path(asset.sha256, asset.extension)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"the file of media {asset.id} is missing from the media store")
        return path

    async def read_bytes(self, asset: MediaAsset) -> bytes:
        try:
            return await asyncio.to_thread(self.files.read, asset.sha256, asset.extension)
        except FileNotFoundError:
            raise NotFound(f"the file of media {asset.id} is missing from the media store") from None

    async def thumbnail(self, asset: MediaAsset) -> Path:
        """The WebP thumbnail's path, made on first use (once, however many ask at the same time)."""
        side = self.config.thumbnail_px
        path = self.files.thumb_path(asset.sha256, side)
        if await asyncio.to_thread(path.is_file):
            return path
        key = f"{asset.sha256}-{side}"
        running = self._thumbs.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._thumbs[key] = future
        try:
            if asset.kind == "video":
                data = await asyncio.to_thread((await self.poster(asset)).read_bytes)
            else:
                data = await self.read_bytes(asset)
            max_pixels = self.config.max_pixels

            def make() -> Path:
                return self.files.put_thumb(asset.sha256, side, pictures.thumbnail(data, side, max_pixels))

            made = await asyncio.to_thread(make)
            future.set_result(made)
            return made
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it; nobody else must be told it was lost
            raise
        finally:
            self._thumbs.pop(key, None)

    async def thumbnail_bytes(self, asset: MediaAsset) -> bytes:
        """The thumbnail's bytes: from memory when served lately, else from disk (made on first use)."""
        key = f"{asset.sha256}-{self.config.thumbnail_px}"
        cached = self._thumb_cache.get(key)
        if cached is not None:
            self._thumb_cache.move_to_end(key)
            return cached
        path = await self.thumbnail(asset)
        data = await asyncio.to_thread(path.read_bytes)
        self._thumb_cache[key] = data
        self._thumb_cache_bytes += len(data)
        while self._thumb_cache_bytes > THUMB_CACHE_BYTES and self._thumb_cache:
            _, dropped = self._thumb_cache.popitem(last=False)
            self._thumb_cache_bytes -= len(dropped)
        return data

    async def list(
        self,
        *,
        limit: int,
        offset: int = 0,
        model: str | None = None,
        provider: str | None = None,
        q: str | None = None,
        tier: str | None = None,
        with_uploads: bool = False,
    ) -> MediaPage:
        """Generated images, newest first (`with_uploads`: uploaded images too)."""
        return await self.rows.list(
            kind="image",
            limit=limit,
            offset=offset,
            tier=tier,
            model=model,
            provider=provider,
            q=q,
            with_uploads=with_uploads,
        )

    # -- deleting --------------------------------------------------------------------------------

    async def delete(self, asset_id: str) -> MediaAsset:
        asset = await self.rows.delete(asset_id)
        if asset is None:
            raise NotFound(f"no media {asset_id!r}")
        if not await self.rows.sha_in_use(asset.sha256):
            await asyncio.to_thread(self.files.remove, asset.sha256, asset.extension)
            for key in [k for k in self._thumb_cache if k.startswith(f"{asset.sha256}-")]:
                self._thumb_cache_bytes -= len(self._thumb_cache.pop(key))
        return asset


def _now() -> datetime:
    return datetime.now(UTC)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
