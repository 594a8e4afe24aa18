"""The content-addressed media store on local disk: files named by their sha256, written atomically.

Layout under the root (``<data dir>/media`` by default)::

    ab/ab12...ef.png          the bytes, named by their sha256 (identical bytes are stored once)
    thumbs/ab/ab12...ef-256.webp
    posters/ab/ab12...ef.webp  a video's first frame
    tmp/                      files being written (same filesystem, so the rename is atomic)

A write goes to ``tmp/``, is fsynced, renamed into place and the directory fsynced, so a crash leaves
either the whole file or none: never a half image under a final name. Temp files a crash left behind
are removed on start. Every method is synchronous and meant for a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path


class MediaFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def prepare(self) -> int:
        """Create the folders and remove temp files an interrupted write left; returns how many."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        return removed

    def path(self, sha256: str, extension: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{extension}"

    def thumb_path(self, sha256: str, side: int) -> Path:
        return self.root / "thumbs" / sha256[:2] / f"{sha256}-{side}.webp"

    def put(self, data: bytes, extension: str) -> tuple[str, Path]:
        """Store `data`; returns its sha256 and path. Bytes already stored are not written again."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256, extension)
        if not target.exists():
            self._write(target, data)
        return sha256, target

    def put_thumb(self, sha256: str, side: int, data: bytes) -> Path:
        target = self.thumb_path(sha256, side)
        self._write(target, data)
        return target

    def poster_path(self, sha256: str) -> Path:
        return self.root / "posters" / sha256[:2] / f"{sha256}.webp"

    def put_poster(self, sha256: str, data: bytes) -> Path:
        target = self.poster_path(sha256)
        self._write(target, data)
        return target

    def temp_path(self) -> Path:
        """A fresh temp file name on the store's filesystem (for a download streamed to disk)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def commit(self, temp: Path, sha256: str, extension: str) -> Path:
        """Move a fully written temp file (see `temp_path`) to its content-addressed name: fsynced,
        renamed, the directory fsynced. Bytes already stored are kept and the temp file removed."""
        target = self.path(sha256, extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            temp.unlink(missing_ok=True)
            return target
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
        _fsync_dir(target.parent)
        return target

    def read(self, sha256: str, extension: str) -> bytes:
        return self.path(sha256, extension).read_bytes()

    def remove(self, sha256: str, extension: str) -> None:
        """Remove a file and its thumbnails (call only when no asset refers to these bytes)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256, extension).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.poster_path(sha256).unlink()
        folder = self.root / "thumbs" / sha256[:2]
        if folder.is_dir():
            for thumb in folder.glob(f"{sha256}-*.webp"):
                with contextlib.suppress(FileNotFoundError):
                    thumb.unlink()

    def _write(self, target: Path, data: bytes) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
