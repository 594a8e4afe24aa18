"""Build a project's ZIP archive in memory: one root folder, regular files only, the same bytes every time."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime

from mmstudio.domain.codegen.paths import check_tree, project_slug, safe_path
from mmstudio.domain.codegen.types import GeneratedFile

FILE_MODE = 0o100644  # a regular file, rw-r--r--: no link, no executable bit
_UNIX = 3  # ZipInfo.create_system: the mode in external_attr is read by unzip tools
_EARLIEST = (1980, 1, 1, 0, 0, 0)  # the ZIP format cannot say anything earlier
_LATEST = (2107, 12, 31, 23, 59, 58)


def _timestamp(created: datetime) -> tuple[int, int, int, int, int, int]:
    if created.tzinfo is not None:
        created = created.astimezone(UTC)
    stamp = (created.year, created.month, created.day, created.hour, created.minute, created.second)
    return max(_EARLIEST, min(stamp, _LATEST))


def zip_bytes(root: str, files: Sequence[GeneratedFile], *, created: datetime) -> bytes:
    """A deflated ZIP with each file as `root/path`, in the order given.

    `root` goes through `project_slug` (a project name or an existing slug both work) and each path
    through `safe_path`, so no entry can climb out of the root. Entries are 0o644 regular files
    dated `created` (UTC when it has a time zone, clamped to what ZIP can store), so the same
    input always gives the same bytes.
    """
    folder = project_slug(root)
    paths = [safe_path(file.path) for file in files]
    check_tree(paths)
    stamp = _timestamp(created)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file, path in zip(files, paths, strict=True):
            info = zipfile.ZipInfo(f"{folder}/{path}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _UNIX
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, file.content.encode("utf-8"))
    return buffer.getvalue()
