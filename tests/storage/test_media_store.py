"""The media store on real databases and a real disk: content-addressed atomic files, rows with recipes,
uploads cleaned, thumbnails made once, the gallery's filters, deletes that keep shared bytes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmstudio.config import ImagesConfig
from mmstudio.domain.media import pictures
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.media.types import Recipe
from mmstudio.errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from mmstudio.storage.db import session_factory
from mmstudio.storage.media_files import MediaFiles
from mmstudio.storage.media_repo import MediaRepository
from tests.fakes.images import make_image
from tests.fakes.videos import make_mp4


def _store(engine: Any, root: Path, **config: Any) -> MediaStore:
    return MediaStore(MediaFiles(root), MediaRepository(session_factory(engine)), ImagesConfig(**config))


def _recipe(
    prompt: str = "a lighthouse at dusk", model: str = "a1111/sdxl", provider: str = "a1111"
) -> Recipe:
    return Recipe(model_used=model, provider=provider, prompt=prompt, seed=1234, steps=20, size="64x64")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp")


async def test_generated_image_is_stored_by_sha_with_its_recipe(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media")
    await store.prepare()
    png = make_image(64, 48)
    asset = await store.save_generated(
        png,
        "image/png",
        recipe=_recipe(),
        attempts=({"model": "a1111/sdxl", "outcome": "ok"},),
        latency_ms=12.5,
    )
    assert (asset.kind, asset.mime, asset.width, asset.height) == ("image", "image/png", 64, 48)
    assert len(asset.id) >= 22 and asset.id.isascii()
    path = await store.read_path(asset)
    stored = path.read_bytes()
    assert path.name == f"{asset.sha256}.png" and hashlib.sha256(stored).hexdigest() == asset.sha256
    assert asset.bytes == len(stored)
    # The PNG says how it was made, in A1111's convention and in full.
    texts = pictures.png_texts(stored)
    assert texts["parameters"].startswith("a lighthouse at dusk\nSteps: 20, Seed: 1234, Size: 64x64")
    assert json.loads(texts["mmstudio"])["model_used"] == "a1111/sdxl"
    again = await store.get(asset.id)
    assert again is not None and again.recipe == asset.recipe and again.attempts == asset.attempts
    assert again.latency_ms == 12.5
    # many at once (one query): the ones that exist, by id; an unknown or over-long id is simply absent
    assert await store.get_many([asset.id, "img_nope", "x" * 41, asset.id]) == {asset.id: again}
    assert await store.get_many([]) == {}
    assert list((tmp_path / "media" / "tmp").iterdir()) == []


async def test_identical_bytes_are_stored_once_and_kept_while_shared(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media")
    jpeg = make_image(32, 32, "JPEG")
    first = await store.save_generated(jpeg, "image/jpeg", recipe=_recipe())
    second = await store.save_generated(jpeg, "image/jpeg", recipe=_recipe())
    assert first.id != second.id and first.sha256 == second.sha256
    assert len(_files(tmp_path / "media")) == 1
    await store.thumbnail(first)
    await store.delete(first.id)
    assert (await store.read_path(second)).is_file()  # still referenced
    await store.delete(second.id)
    assert _files(tmp_path / "media") == []  # the file and its thumbnail are gone with the last one
    with pytest.raises(NotFound):
        await store.delete(second.id)


@pytest.mark.parametrize(
    "data",
    [
        b"not an image at all",
        make_image(64, 64)[:-30],  # a truncated body
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,  # base64 that decoded to garbage with the right magic
    ],
)
async def test_bytes_that_are_not_a_whole_image_leave_nothing_behind(
    engine: Any, tmp_path: Path, data: bytes
) -> None:
    store = _store(engine, tmp_path / "media")
    await store.prepare()
    with pytest.raises(UnsupportedMediaType):
        await store.save_generated(data, "image/png", recipe=_recipe())
    assert _files(tmp_path / "media") == []
    assert (await store.list(limit=10)).total == 0


async def test_prepare_removes_what_an_interrupted_write_left(engine: Any, tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "tmp").mkdir(parents=True)
    (root / "tmp" / "deadbeef.part").write_bytes(b"\x89PNG half an ima")
    store = _store(engine, root)
    assert await store.prepare() == 1
    assert list((root / "tmp").iterdir()) == []


async def test_upload_is_cleaned_and_checked(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media", max_upload_mb=1.0, max_pixels=1_000_000)
    image = Image.new("RGB", (30, 10), (1, 2, 3))
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x010F] = "PrivateCam"
    raw = io.BytesIO()
    image.save(raw, format="JPEG", exif=exif)
    asset = await store.save_upload(raw.getvalue(), "../../etc/photo.jpg")
    assert (asset.kind, asset.width, asset.height, asset.filename) == ("upload", 10, 30, "photo.jpg")
    assert b"PrivateCam" not in await store.read_bytes(asset)
    assert (await store.list(limit=10)).total == 0  # uploads are not gallery images
    with pytest.raises(UnsupportedMediaType):
        await store.save_upload(b"<html><script>alert(1)</script></html>", "x.html")
    with pytest.raises(PayloadTooLarge, match="1 MB"):
        await store.save_upload(b"\0" * 1_000_001, "big.png")
    with pytest.raises(InvalidRequest, match="decompression bomb"):
        await store.save_upload(make_image(1200, 1000), "wide.png")


async def test_thumbnail_is_made_once_even_when_asked_at_once(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media", thumbnail_px=128)
    asset = await store.save_generated(make_image(512, 256), "image/png", recipe=_recipe())
    paths = await asyncio.gather(*(store.thumbnail(asset) for _ in range(8)))
    assert len(set(paths)) == 1
    made = paths[0].stat().st_mtime_ns
    with Image.open(paths[0]) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (128, 64))
    assert (await store.thumbnail(asset)).stat().st_mtime_ns == made  # served from disk, not remade


async def test_missing_file_is_not_found_not_a_crash(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media")
    asset = await store.save_generated(make_image(16, 16), "image/png", recipe=_recipe())
    (await store.read_path(asset)).unlink()
    with pytest.raises(NotFound, match="missing"):
        await store.read_path(asset)
    with pytest.raises(NotFound, match="missing"):
        await store.thumbnail(asset)


async def test_gallery_pages_newest_first_and_filters(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media")
    made = []
    for i, (prompt, model, provider) in enumerate(
        [
            ("a red fox in snow", "a1111/sdxl", "a1111"),
            ("a lighthouse at dusk", "openai/gpt-image-1", "openai"),
            ("100% cotton_shirt", "openai/gpt-image-1", "openai"),
            ("Lighthouse, stormy sea", "gemini/gemini-2.5-flash-image", "gemini"),
        ]
    ):
        made.append(
            await store.save_generated(
                make_image(8, 8, color=(i, i, i)), "image/png", recipe=_recipe(prompt, model, provider)
            )
        )
    page = await store.list(limit=2)
    assert page.total == 4 and [a.id for a in page.items] == [made[3].id, made[2].id]
    assert [a.id for a in (await store.list(limit=2, offset=2)).items] == [made[1].id, made[0].id]
    assert {a.id for a in (await store.list(limit=10, provider="openai")).items} == {made[1].id, made[2].id}
    assert [a.id for a in (await store.list(limit=10, model="a1111/sdxl")).items] == [made[0].id]
    assert {a.id for a in (await store.list(limit=10, q="LIGHTHOUSE")).items} == {made[1].id, made[3].id}
    assert [a.id for a in (await store.list(limit=10, q="lighthouse dusk")).items] == [made[1].id]
    # LIKE wildcards in the search are literal characters.
    assert [a.id for a in (await store.list(limit=10, q="100%")).items] == [made[2].id]
    assert [
        a.id for a in (await store.list(limit=10, q="a_red")).items
    ] == []  # "_" is not "any one character"
    assert (await store.list(limit=10, tier="kids")).total == 0
    # uploads are not generated images; a picker asks for them too (images only, not videos)
    photo = await store.save_upload(make_image(40, 40), "me.png")
    await store.save_upload(make_mp4(), "clip.mp4")
    assert photo.id not in {a.id for a in (await store.list(limit=10)).items}
    both = await store.list(limit=10, with_uploads=True)
    assert both.total == len(made) + 1 and both.items[0].id == photo.id


async def test_thumbnails_served_lately_come_from_memory(engine: Any, tmp_path: Path) -> None:
    store = _store(engine, tmp_path / "media")
    asset = await store.save_generated(make_image(300, 300), "image/png", recipe=_recipe())
    first = await store.thumbnail_bytes(asset)
    (await store.thumbnail(asset)).unlink()  # gone from disk: the next answer must come from memory
    assert await store.thumbnail_bytes(asset) == first
    await store.delete(asset.id)
    again = await store.save_generated(make_image(300, 300), "image/png", recipe=_recipe())
    assert again.sha256 == asset.sha256
    remade = await store.thumbnail_bytes(again)  # the delete dropped it from memory: made anew, on disk
    assert remade == first and (await store.thumbnail(again)).is_file()


# -- videos ----------------------------------------------------------------------------------------


async def _chunks(data: bytes, size: int = 1000) -> Any:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_video_is_streamed_in_checked_and_gets_a_poster(engine: Any, tmp_path: Path) -> None:

    store = _store(engine, tmp_path / "media")
    await store.prepare()
    mp4 = make_mp4(96, 64, seconds=2, fps=8)
    recipe = Recipe(model_used="xai/grok-imagine-video", provider="xai", prompt="a fox runs")
    asset = await store.save_video(_chunks(mp4), recipe=recipe, latency_ms=1234.0)
    assert (asset.kind, asset.mime, asset.width, asset.height) == ("video", "video/mp4", 96, 64)
    assert asset.duration_s == 2.0 and asset.fps == 8.0 and asset.bytes == len(mp4)
    path = await store.read_path(asset)
    assert path.read_bytes() == mp4 and path.name == f"{hashlib.sha256(mp4).hexdigest()}.mp4"
    with Image.open(await store.poster(asset)) as poster:
        assert (poster.format, poster.size) == ("WEBP", (96, 64))
    with Image.open(await store.thumbnail(asset)) as thumb:
        assert thumb.format == "WEBP"
    again = await store.get(asset.id)
    assert again is not None and again.duration_s == 2.0 and again.fps == 8.0
    assert list((tmp_path / "media" / "tmp").iterdir()) == []
    await store.delete(asset.id)
    assert _files(tmp_path / "media") == []


@pytest.mark.parametrize("cut", ["half", "garbage", "empty"])
async def test_a_broken_video_download_leaves_nothing_behind(engine: Any, tmp_path: Path, cut: str) -> None:

    store = _store(engine, tmp_path / "media")
    await store.prepare()
    mp4 = make_mp4(seconds=1)

    async def broken() -> Any:
        if cut == "garbage":
            yield b"<html>the link expired</html>"
        elif cut == "half":
            yield mp4[: len(mp4) // 2]
            raise ConnectionError("the download was cut")

    recipe = Recipe(model_used="m", provider="p", prompt="x")
    with pytest.raises((UnsupportedMediaType, ConnectionError)):
        await store.save_video(broken(), recipe=recipe)
    assert _files(tmp_path / "media") == [] and list((tmp_path / "media" / "tmp").iterdir()) == []
    assert (await store.list(limit=10)).total == 0
