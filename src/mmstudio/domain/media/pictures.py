"""Image bytes: what they are, cleaning an upload, thumbnails, and the recipe inside a PNG.

Plain synchronous functions over bytes, run in a worker thread by the media store (never on the event
loop). Pillow reads only an image's header to say what it is; pixels are decoded only to clean an
upload or make a thumbnail.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from mmstudio.errors import InvalidRequest, UnsupportedMediaType

FORMAT_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
ALLOWED = "PNG, JPEG, WebP or GIF"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class Picture:
    data: bytes
    mime: str
    width: int
    height: int


def _open(data: bytes, max_pixels: int, what: str) -> Image.Image:
    """Open `data` reading its header only; refuse anything not an image, or over `max_pixels`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise InvalidRequest(
                f"{what} is too large to decode safely (a decompression bomb?); "
                f"at most {max_pixels:,} pixels",
                field="file",
            ) from None
        raise UnsupportedMediaType(f"{what} is not an image; send {ALLOWED}", field="file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedMediaType(
            f"{what} is not a readable image ({exc}); send {ALLOWED}", field="file"
        ) from None
    if image.format not in FORMAT_MIME:
        image.close()
        raise UnsupportedMediaType(
            f"{what} is {image.format or 'an unknown'} image; send {ALLOWED}", field="file"
        )
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise InvalidRequest(
            f"{what} is {width}x{height} ({width * height:,} pixels): "
            f"over the limit of {max_pixels:,} pixels "
            "(a decompression bomb is refused; set images.max_pixels to change it)",
            field="file",
        )
    return image


def inspect(data: bytes, max_pixels: int, what: str = "the image") -> Picture:
    """The type and size of image bytes, from the header (PNG chunks are CRC-checked, so a truncated
    PNG is caught)."""
    with _open(data, max_pixels, what) as image:
        mime = FORMAT_MIME[image.format or ""]
        width, height = image.size
    if mime == "image/png":
        _check_png(data, what)
    return Picture(data, mime, width, height)


def clean_upload(data: bytes, max_pixels: int, what: str = "the upload") -> Picture:
    """An uploaded photo made safe to keep: decoded (so it is really an image), turned upright by its
    EXIF orientation, and re-encoded without its metadata (no EXIF, GPS, comments or ICC-borne text)."""
    with _open(data, max_pixels, what) as image:
        source = image.format or "PNG"
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnsupportedMediaType(f"{what} is damaged ({exc}); send {ALLOWED}", field="file") from None
        fmt = "JPEG" if source == "JPEG" else "WEBP" if source == "WEBP" else "PNG"
        if fmt == "JPEG" and upright.mode not in ("RGB", "L"):
            upright = upright.convert("RGB")
        if fmt == "PNG" and upright.mode == "P" and "transparency" in upright.info:
            upright = upright.convert("RGBA")
        clean = Image.new(upright.mode, upright.size)
        clean.paste(upright)  # a fresh image: none of the source's info, EXIF or text chunks
        out = io.BytesIO()
        options: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        clean.save(out, format=fmt, **options)
        return Picture(out.getvalue(), FORMAT_MIME[fmt], clean.width, clean.height)


def thumbnail(data: bytes, side: int, max_pixels: int) -> bytes:
    """A WebP no larger than `side` on its longer edge (JPEGs are decoded at reduced scale)."""
    with _open(data, max_pixels, "the image") as image:
        image.draft("RGB", (side, side))
        image.thumbnail((side, side), reducing_gap=2.0)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert(
                "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
            )
        out = io.BytesIO()
        image.save(out, format="WEBP", quality=80, method=4)
        return out.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def text_chunk(keyword: str, text: str) -> bytes:
    """A PNG text chunk: ``tEXt`` when the text is Latin-1 (what A1111 writes), else UTF-8 ``iTXt``."""
    key = keyword.encode("latin-1")
    try:
        return _chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8"))


def with_text(png: bytes, texts: dict[str, str]) -> bytes:
    """`png` with text chunks added right after its header, without decoding or re-encoding pixels;
    any earlier chunks with the same keywords are dropped so the recipe is the only one there."""
    if not png.startswith(PNG_SIGNATURE):
        return png
    keys = {k.encode("latin-1") for k in texts}
    parts = [png[:8]]
    pos, inserted = 8, False
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        end = pos + 12 + length
        chunk = png[pos:end]
        if kind in (b"tEXt", b"iTXt", b"zTXt") and png[pos + 8 : end - 4].split(b"\0", 1)[0] in keys:
            pos = end
            continue
        parts.append(chunk)
        if kind == b"IHDR" and not inserted:
            parts.extend(text_chunk(k, v) for k, v in texts.items())
            inserted = True
        pos = end
    return b"".join(parts)


def png_texts(png: bytes) -> dict[str, str]:
    """The text chunks of a PNG (what an image viewer shows as its metadata)."""
    with Image.open(io.BytesIO(png)) as image:
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}


def _check_png(data: bytes, what: str) -> None:
    """Every chunk's length and CRC, and an IEND at the end: a cut-off PNG is refused."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise UnsupportedMediaType(
                f"{what} is a damaged PNG (bad {kind.decode('latin-1')} chunk)", field="file"
            )
        if kind == b"IEND":
            return
        pos = end
    raise UnsupportedMediaType(f"{what} is a PNG cut short (no IEND chunk)", field="file")
