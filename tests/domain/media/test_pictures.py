"""Image bytes: checking, cleaning uploads (EXIF orientation, metadata stripped), thumbnails, PNG text."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from mmstudio.domain.media import pictures
from mmstudio.errors import InvalidRequest, UnsupportedMediaType
from tests.fakes.images import make_image

LIMIT = 50_000_000


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_inspect_reads_type_and_size(fmt: str, mime: str) -> None:
    picture = pictures.inspect(make_image(48, 32, fmt), LIMIT)
    assert (picture.mime, picture.width, picture.height) == (mime, 48, 32)


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4\n...", b"<svg xmlns='x'></svg>"])
def test_not_an_image_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="not"):
        pictures.inspect(data, LIMIT)


def test_a_png_cut_short_is_refused() -> None:
    png = make_image(64, 64)
    with pytest.raises(UnsupportedMediaType, match=r"cut short|damaged"):
        pictures.inspect(png[: len(png) - 20], LIMIT)


def test_a_png_with_a_bad_crc_is_refused() -> None:
    png = bytearray(make_image(64, 64))
    png[60] ^= 0xFF  # inside the first IDAT
    with pytest.raises(UnsupportedMediaType, match="damaged"):
        pictures.inspect(bytes(png), LIMIT)


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares a huge canvas in a few bytes: the decompression bomb shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 1024)
    body = struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return pictures.PNG_SIGNATURE + chunk + body + end


@pytest.mark.parametrize("size", [(20_000, 20_000), (200_000, 200_000)])
def test_a_decompression_bomb_is_refused_before_decoding(size: tuple[int, int]) -> None:
    bomb = _huge_png_header(*size)
    with pytest.raises(InvalidRequest, match="decompression bomb") as caught:
        pictures.clean_upload(bomb, LIMIT, "bomb.png")
    assert not isinstance(caught.value, UnsupportedMediaType)


def _jpeg_with_exif(width: int, height: int, orientation: int) -> bytes:
    image = Image.new("RGB", (width, height), (10, 200, 30))
    image.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSInfo: latitude
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, comment=b"private note")
    return out.getvalue()


def test_upload_is_turned_upright_and_stripped_of_metadata() -> None:
    raw = _jpeg_with_exif(40, 20, orientation=6)  # "rotate 90 CW to display"
    with Image.open(io.BytesIO(raw)) as before:
        assert before.getexif()[0x0112] == 6
    clean = pictures.clean_upload(raw, LIMIT, "photo.jpg")
    assert (clean.mime, clean.width, clean.height) == ("image/jpeg", 20, 40)
    with Image.open(io.BytesIO(clean.data)) as after:
        assert dict(after.getexif()) == {}
        assert "comment" not in after.info and "exif" not in after.info
        assert after.size == (20, 40)
    assert b"SecretCam" not in clean.data and b"private note" not in clean.data


def test_upload_png_keeps_transparency_and_drops_text() -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    info = PngInfo()
    info.add_text("Author", "someone private")
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    clean = pictures.clean_upload(out.getvalue(), LIMIT, "a.png")
    assert clean.mime == "image/png"
    with Image.open(io.BytesIO(clean.data)) as after:
        assert after.mode == "RGBA" and after.getpixel((3, 3))[3] == 0
        assert getattr(after, "text", {}) == {}


def test_thumbnail_is_a_small_webp() -> None:
    thumb = pictures.thumbnail(make_image(1024, 512, "JPEG"), 256, LIMIT)
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "WEBP"
        assert image.size == (256, 128)


def test_recipe_text_goes_into_the_png_without_touching_pixels() -> None:
    png = make_image(32, 32)
    tagged = pictures.with_text(
        png, {"parameters": "a lighthouse\nSteps: 20, Seed: 7", "mmstudio": '{"a": 1}'}
    )
    assert pictures.png_texts(tagged) == {
        "parameters": "a lighthouse\nSteps: 20, Seed: 7",
        "mmstudio": '{"a": 1}',
    }
    with Image.open(io.BytesIO(png)) as a, Image.open(io.BytesIO(tagged)) as b:
        assert a.tobytes() == b.tobytes()
    pictures.inspect(tagged, LIMIT)  # still a valid PNG, every CRC right
    # Tagging again replaces, never duplicates; non-Latin-1 text goes as UTF-8 iTXt.
    again = pictures.with_text(tagged, {"parameters": "phare au crépuscule — 灯台"})
    assert pictures.png_texts(again)["parameters"] == "phare au crépuscule — 灯台"
    assert again.count(b"parameters") == 1


def test_with_text_leaves_other_formats_alone() -> None:
    jpeg = make_image(8, 8, "JPEG")
    assert pictures.with_text(jpeg, {"parameters": "x"}) == jpeg
