"""zip_bytes: one root folder, regular 0o644 files, the same bytes for the same input."""

from __future__ import annotations

import io
import stat
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mmstudio.domain.codegen.archive import zip_bytes
from mmstudio.domain.codegen.types import GeneratedFile
from mmstudio.errors import UnsafePath

CREATED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
FILES = [
    GeneratedFile("README.md", "markdown", "# Todo\n"),
    GeneratedFile("src/App.tsx", "tsx", "export default function App() {}\n"),
    GeneratedFile("src/components/Item.tsx", "tsx", "export const Item = 'ünïcode ✓';\n" * 50),
]


def read(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def test_entries_are_under_the_slugged_root() -> None:
    archive = read(zip_bytes("My Todo App!", FILES, created=CREATED))
    assert archive.namelist() == [
        "my-todo-app/README.md",
        "my-todo-app/src/App.tsx",
        "my-todo-app/src/components/Item.tsx",
    ]
    for file in FILES:
        assert archive.read(f"my-todo-app/{file.path}").decode("utf-8") == file.content


def test_entries_are_regular_deflated_non_executable_files() -> None:
    for info in read(zip_bytes("todo", FILES, created=CREATED)).infolist():
        mode = info.external_attr >> 16
        assert mode == 0o100644
        assert stat.S_ISREG(mode) and not stat.S_ISLNK(mode)
        assert mode & 0o111 == 0
        assert info.create_system == 3
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert not info.is_dir()


def test_the_timestamp_is_the_creation_time() -> None:
    info = read(zip_bytes("todo", FILES, created=CREATED)).infolist()[0]
    assert info.date_time == (2026, 3, 14, 15, 9, 26)


def test_an_aware_timestamp_is_stored_in_utc() -> None:
    paris = datetime(2026, 3, 14, 16, 9, 26, tzinfo=timezone(timedelta(hours=1)))
    assert zip_bytes("todo", FILES, created=paris) == zip_bytes("todo", FILES, created=CREATED)


@pytest.mark.parametrize(
    ("created", "stamp"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), (1980, 1, 1, 0, 0, 0)),
        (datetime(1979, 12, 31, 23, 59, 59), (1980, 1, 1, 0, 0, 0)),
        (datetime(2200, 1, 1), (2107, 12, 31, 23, 59, 58)),
    ],
)
def test_timestamps_outside_what_zip_can_hold_are_clamped(created: datetime, stamp: tuple[int, ...]) -> None:
    info = read(zip_bytes("todo", FILES, created=created)).infolist()[0]
    assert info.date_time == stamp


def test_the_same_input_gives_the_same_bytes() -> None:
    first = zip_bytes("todo", FILES, created=CREATED)
    assert zip_bytes("todo", list(FILES), created=CREATED) == first
    assert zip_bytes("todo", FILES, created=CREATED + timedelta(minutes=1)) != first
    assert zip_bytes("todo", FILES[::-1], created=CREATED) != first


def test_a_slug_root_is_kept_as_it_is() -> None:
    assert zip_bytes("my-todo-app", FILES, created=CREATED) == zip_bytes(
        "My Todo App!", FILES, created=CREATED
    )


@pytest.mark.parametrize("root", ["", "../..", "/etc", "..\\..\\x", "C:\\"])
def test_the_root_cannot_climb_out(root: str) -> None:
    for name in read(zip_bytes(root, FILES, created=CREATED)).namelist():
        first = name.split("/")[0]
        assert first not in ("", "..", ".") and ":" not in first and "\\" not in name


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "src/../../x", "..\\..\\x", "C:\\x", ".git/hooks/pre-commit"]
)
def test_unsafe_paths_are_refused(bad: str) -> None:
    with pytest.raises(UnsafePath):
        zip_bytes("todo", [FILES[0], GeneratedFile(bad, "text", "x\n")], created=CREATED)


def test_paths_are_normalized() -> None:
    archive = read(zip_bytes("todo", [GeneratedFile("./a//b/./c.txt", "text", "x\n")], created=CREATED))
    assert archive.namelist() == ["todo/a/b/c.txt"]


def test_colliding_paths_are_refused() -> None:
    with pytest.raises(UnsafePath):
        zip_bytes("todo", [FILES[0], GeneratedFile("readme.MD", "markdown", "x\n")], created=CREATED)


def test_no_files_gives_an_empty_archive() -> None:
    assert read(zip_bytes("todo", [], created=CREATED)).namelist() == []


def test_content_is_compressed() -> None:
    big = [GeneratedFile("a.txt", "text", "the same line\n" * 10_000)]
    data = zip_bytes("todo", big, created=CREATED)
    assert len(data) < 10_000
    assert read(data).read("todo/a.txt") == b"the same line\n" * 10_000
