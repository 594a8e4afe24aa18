"""Write generated files into a folder on disk: all checked before any is written, links never followed.

The output folder is the user's choice: if it is itself a symbolic link it is resolved once and the
folder it points to is the root. Below the root nothing may be a link: a model's `src/x.py` must
not land in `/etc` because someone made `out/src` point there. Checks run first (all or nothing);
the writes then open each folder and file relative to its parent without following links
(`O_NOFOLLOW`), so a link swapped in between the check and the write is refused, not followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmstudio.domain.codegen.paths import check_tree, safe_path
from mmstudio.domain.codegen.types import GeneratedFile
from mmstudio.errors import InvalidRequest, OutputExists, UnsafePath

SHOWN_EXISTING = 10
FILE_MODE = 0o644
FOLDER_MODE = 0o755

# Absent on Windows; there the path-based fallback below is used.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO swapped in fails instead of hanging
_RELATIVE_OPENS = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd and bool(_NOFOLLOW)


@dataclass(frozen=True, slots=True)
class _Planned:
    file: GeneratedFile
    parts: list[str]  # the safe relative path, split
    target: Path
    exists: bool


def _root(out_dir: Path) -> Path:
    """The resolved output folder; refused when it, or the nearest existing folder above it, is a file."""
    root = out_dir.resolve()
    for candidate in (root, *root.parents):
        if candidate.exists():
            if not candidate.is_dir():
                if candidate == root:
                    raise InvalidRequest(f"the output folder {out_dir} is a file, not a folder", field="out")
                raise InvalidRequest(
                    f"cannot create the output folder {out_dir}: {candidate} is a file", field="out"
                )
            break
    return root


def _check_one(root: Path, out_dir: Path, file: GeneratedFile) -> _Planned:
    path = safe_path(file.path)
    parts = path.split("/")
    current, shown = root, out_dir
    exists = False
    for index, part in enumerate(parts):
        current, shown = current / part, shown / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            break
        last = index == len(parts) - 1
        if stat.S_ISLNK(info.st_mode):
            where = f"is the symbolic link {shown}" if last else f"goes through the symbolic link {shown}"
            raise UnsafePath(path, where)
        if not last:
            if not stat.S_ISDIR(info.st_mode):
                raise InvalidRequest(f"cannot write {path}: {shown} is a file, not a folder", field="out")
            continue
        if stat.S_ISDIR(info.st_mode):
            raise InvalidRequest(f"cannot write {path}: {shown} is a folder", field="out")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequest(f"cannot write {path}: {shown} is not a regular file", field="out")
        if info.st_nlink > 1:
            raise UnsafePath(path, f"{shown} has other hard links, and overwriting it would change them too")
        exists = True
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root):
        raise UnsafePath(path, f"it resolves outside {out_dir}")
    return _Planned(file, parts, target, exists)


def _plan(out_dir: Path, files: Sequence[GeneratedFile], *, force: bool) -> tuple[Path, list[_Planned]]:
    root = _root(out_dir)
    planned = [_check_one(root, out_dir, file) for file in files]
    check_tree("/".join(p.parts) for p in planned)
    existing = ["/".join(p.parts) for p in planned if p.exists]
    if existing and not force:
        shown = ", ".join(existing[:SHOWN_EXISTING])
        more = len(existing) - SHOWN_EXISTING
        if more > 0:
            shown += f" and {more} more"
        count = (
            f"{len(existing)} file already exists"
            if len(existing) == 1
            else f"{len(existing)} files already exist"
        )
        raise OutputExists(f"{count} in {out_dir}: {shown}; use --force to overwrite", existing)
    return root, planned


def check_writes(out_dir: Path, files: Sequence[GeneratedFile], *, force: bool) -> list[Path]:
    """Check that every file can be written safely under `out_dir`, writing nothing; return the targets.

    Raises `UnsafePath` (bad path, a symbolic link on the way, a hard-linked target),
    `OutputExists` (files exist and `force` is false) or `InvalidRequest` (a file where a folder is
    needed, or the reverse). Targets are under the resolved `out_dir`.
    """
    _, planned = _plan(out_dir, files, force=force)
    return [p.target for p in planned]


def _drop_exec_bits(fd: int) -> None:
    """An overwritten file keeps its mode; a model's content must not stay executable (or setuid)."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o7111 and hasattr(os, "fchmod"):
        os.fchmod(fd, mode & ~0o7111)


def _open_file(root: Path, parts: list[str], flags: int) -> int:
    if not _RELATIVE_OPENS:
        target = root.joinpath(*parts)
        target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        return os.open(target, flags, FILE_MODE)
    folder = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, FOLDER_MODE, dir_fd=folder)
            inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], flags, FILE_MODE, dir_fd=folder)
    finally:
        os.close(folder)


def _write_one(root: Path, item: _Planned) -> None:
    path = "/".join(item.parts)
    # A file that did not exist at the check must not have appeared since (O_EXCL).
    exclusive = 0 if item.exists else os.O_EXCL
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | exclusive | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    try:
        fd = _open_file(root, item.parts, flags)
    except FileExistsError as error:
        raise OutputExists(f"{path} appeared while writing; use --force to overwrite", [path]) from error
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise UnsafePath(path, "a symbolic link appeared on its way while writing") from error
        raise
    with os.fdopen(fd, "wb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(path, "it stopped being a regular file while writing")
        _drop_exec_bits(fd)
        handle.write(item.file.content.encode("utf-8"))


def write_files(
    out_dir: Path,
    files: Sequence[GeneratedFile],
    *,
    force: bool = False,
    on_file: Callable[[GeneratedFile, Path], None] | None = None,
) -> list[Path]:
    """Write `files` under `out_dir` (created if missing) after checking them all; return the paths written.

    Nothing is written when a check fails (see `check_writes`). Files get mode 0o644 (less the
    umask) and are never executable; content is written as UTF-8 bytes, exactly as generated.
    `on_file(file, path)` is called after each file is written.
    """
    root, planned = _plan(out_dir, files, force=force)
    root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    written: list[Path] = []
    for item in planned:
        _write_one(root, item)
        written.append(item.target)
        if on_file is not None:
            on_file(item.file, item.target)
    return written
