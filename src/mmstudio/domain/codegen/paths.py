"""Safe relative paths for generated files, and safe names for a project's folder.

A model writes paths as text; before one touches a disk or an archive it goes through `safe_path`,
which returns a relative POSIX path or raises `UnsafePath` saying why. The rules cover Linux,
macOS and Windows at once, because a project written here may be unzipped anywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from mmstudio.errors import UnsafePath

MAX_PATH_CHARS = 240
MAX_DEPTH = 16
MAX_SLUG_CHARS = 60

_WRAPPERS = "\"'`*"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_INVALID = '<>:"|?*'
_RESERVED = frozenset(
    {
        "CON",
        "PRN",
        "AUX",
        "NUL",
        "CONIN$",
        "CONOUT$",
        *(f"COM{c}" for c in "0123456789¹²³"),
        *(f"LPT{c}" for c in "0123456789¹²³"),
    }
)
# Names that git itself treats as its own folder (8.3 short name included, as git does on Windows).
_GIT_DIRS = frozenset({".git", "git~1"})
_EXTENSION = re.compile(r"\.[A-Za-z0-9_+-]*[A-Za-z][A-Za-z0-9_+-]*$")
KNOWN_FILENAMES = frozenset(
    {
        "Dockerfile",
        "Containerfile",
        "Makefile",
        "GNUmakefile",
        "Procfile",
        "Gemfile",
        "Rakefile",
        "Jenkinsfile",
        "Vagrantfile",
        "Brewfile",
        "Pipfile",
        "LICENSE",
        "LICENCE",
        "README",
        "CHANGELOG",
        "AUTHORS",
        "CODEOWNERS",
        "NOTICE",
    }
)


def _unwrap(raw: str) -> str:
    """Strip what models put around a path: whitespace, quotes, backticks, emphasis, a trailing colon."""
    text = raw
    while True:
        stripped = text.strip().strip(_WRAPPERS).strip().removesuffix(":").strip()
        if stripped == text:
            return text
        text = stripped


def _bad_character(text: str) -> str | None:
    for char in text:
        # Cc: NUL, newlines, escapes; Cf: zero-width and bidirectional marks that hide or disguise names.
        if unicodedata.category(char) in ("Cc", "Cf") or char in "\u2028\u2029":
            return char
    return None


def _check_segment(segment: str) -> str | None:
    """The reason one path segment is refused, or None."""
    for char in segment:
        if char in _WINDOWS_INVALID:
            return f"the name {segment!r} contains {char!r}, which Windows does not allow in file names"
    if segment.endswith((" ", ".")):
        return (
            f"the name {segment!r} ends with a dot or a space "
            "(Windows drops it, so it would stand for another name)"
        )
    if segment.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        return f"the name {segment!r} is a reserved device name on Windows"
    if segment.casefold() in _GIT_DIRS:
        return "it writes inside a .git folder (git runs the hooks kept there as programs)"
    return None


def safe_path(raw: str) -> str:
    """Normalize a path written by a model to a relative POSIX path, or raise `UnsafePath`.

    Normalizing strips decoration (whitespace, quotes, backticks, `*` emphasis, a trailing `:`),
    turns backslashes into slashes, collapses repeated slashes, drops `.` segments and applies
    Unicode NFC. A `..` segment is refused, never resolved: a model that writes one is not trusted
    to mean somewhere inside the project.
    """
    text = _unwrap(raw)
    if not text:
        raise UnsafePath(raw, "the path is empty")
    bad = _bad_character(text)
    if bad is not None:
        raise UnsafePath(raw, f"it contains the control character U+{ord(bad):04X}")
    if _URL.match(text):
        raise UnsafePath(raw, "it is a URL, not a file path")
    text = unicodedata.normalize("NFC", text).replace("\\", "/")
    if text.startswith("//"):
        raise UnsafePath(raw, "it is a network (UNC) path")
    if _DRIVE.match(text):
        raise UnsafePath(raw, "it names a Windows drive")
    if text.startswith("/"):
        raise UnsafePath(raw, "it is absolute; paths must be relative to the project")
    if text.startswith("~"):
        raise UnsafePath(raw, "it starts at a home folder (~)")
    segments = [s for s in text.split("/") if s not in ("", ".")]
    if not segments:
        raise UnsafePath(raw, "the path is empty")
    if ".." in segments:
        raise UnsafePath(raw, "it climbs out of its folder with '..'")
    for segment in segments:
        reason = _check_segment(segment)
        if reason is not None:
            raise UnsafePath(raw, reason)
    path = "/".join(segments)
    if len(path) > MAX_PATH_CHARS:
        raise UnsafePath(raw, f"it is longer than {MAX_PATH_CHARS} characters")
    if len(segments) > MAX_DEPTH:
        raise UnsafePath(raw, f"it is deeper than {MAX_DEPTH} folders")
    return path


def looks_like_path(token: str) -> bool:
    """Whether a single token reads as a file path: it has a folder, an extension or a known name.

    Used to tell a path from prose around code blocks; it says nothing about safety.
    """
    if not token or any(c.isspace() for c in token):
        return False
    if "/" in token or "\\" in token:
        return True
    return bool(_EXTENSION.search(token)) or token in KNOWN_FILENAMES


def path_key(path: str) -> str:
    """The identity of a path on a case-insensitive disk (macOS, Windows): two equal keys collide."""
    return unicodedata.normalize("NFC", path).casefold()


def check_tree(paths: Iterable[str]) -> None:
    """Raise `UnsafePath` if two paths would be the same file on some disk, or one is a folder of another."""
    files: dict[str, str] = {}
    folders: dict[str, str] = {}
    for path in paths:
        key = path_key(path)
        if key in files:
            raise UnsafePath(path, f"it is the same file as {files[key]!r} on a case-insensitive disk")
        if key in folders:
            raise UnsafePath(path, f"it is also a folder of {folders[key]!r}")
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise UnsafePath(path, f"its folder {folder!r} is also a file")
            folders.setdefault(folder, path)
        files[key] = path


def project_slug(name: str) -> str:
    """A safe folder (and zip root) name from a project name: "My Todo App!" → "my-todo-app"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG_CHARS].rstrip("-")
    if not slug:
        return "project"
    if slug.upper() in _RESERVED:
        return f"{slug}-project"
    return slug
