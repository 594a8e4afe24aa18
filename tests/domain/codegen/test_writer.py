"""write_files and check_writes: all checked first, nothing followed through links, never executable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mmstudio.domain.codegen.types import GeneratedFile
from mmstudio.domain.codegen.writer import check_writes, write_files
from mmstudio.errors import InvalidRequest, OutputExists, UnsafePath

FILES = [
    GeneratedFile("README.md", "markdown", "# Hi\n"),
    GeneratedFile("src/App.tsx", "tsx", "export default function App() {}\n"),
    GeneratedFile("src/components/deep/Counter.tsx", "tsx", "export const Counter = 1; // é ✓\n"),
]


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (links included, not followed) with its content."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_text("utf-8")
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder that must never be touched; it holds one file to check."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("keep me\n")
    return folder


def test_writes_files_in_nested_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_files(out, FILES)
    root = out.resolve()
    assert written == [root / "README.md", root / "src/App.tsx", root / "src/components/deep/Counter.tsx"]
    assert tree(out) == {f.path: f.content for f in FILES}
    assert (out / "src/components/deep/Counter.tsx").read_bytes() == FILES[2].content.encode("utf-8")


def test_files_are_not_executable(tmp_path: Path) -> None:
    written = write_files(tmp_path / "out", FILES)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o111 == 0
        assert mode & ~0o644 == 0  # 0o644 at most (less the umask)


def test_content_is_written_exactly(tmp_path: Path) -> None:
    file = GeneratedFile("a.txt", "text", "line 1\nline 2 ünïcode\n\n")
    (path,) = write_files(tmp_path, [file])
    assert path.read_bytes() == "line 1\nline 2 ünïcode\n\n".encode()


def test_the_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    check_writes(out, FILES, force=False)
    assert not (tmp_path / "a").exists()  # checking writes nothing
    write_files(out, FILES)
    assert out.is_dir() and (out / "README.md").is_file()


def test_on_file_is_called_after_each_write(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []
    write_files(tmp_path / "out", FILES, on_file=lambda f, p: seen.append((f.path, p.is_file())))
    assert seen == [(f.path, True) for f in FILES]


def test_existing_files_are_refused_and_listed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    (out / "README.md").write_text("mine\n")
    (out / "src/App.tsx").write_text("mine too\n")
    with pytest.raises(OutputExists) as caught:
        write_files(out, FILES)
    message = str(caught.value)
    assert "2 files already exist" in message
    assert "README.md, src/App.tsx" in message
    assert "use --force to overwrite" in message
    assert caught.value.paths == ["README.md", "src/App.tsx"]
    assert caught.value.field == "out"
    # All or nothing: the new file was not written either.
    assert tree(out) == {"README.md": "mine\n", "src/App.tsx": "mine too\n"}


def test_a_long_list_of_existing_files_is_cut(tmp_path: Path) -> None:
    files = [GeneratedFile(f"f{n:02}.txt", "text", "new\n") for n in range(13)]
    for file in files:
        (tmp_path / file.path).write_text("old\n")
    with pytest.raises(OutputExists) as caught:
        check_writes(tmp_path, files, force=False)
    message = str(caught.value)
    assert "13 files already exist" in message
    assert "f09.txt and 3 more; use --force" in message
    assert "f10.txt" not in message
    assert len(caught.value.paths) == 13


def test_force_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("old and much longer than the new content\n")
    write_files(out, FILES, force=True)
    assert (out / "README.md").read_text() == "# Hi\n"


def test_overwriting_drops_an_executable_bit(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o755)
    write_files(tmp_path, [GeneratedFile("run.sh", "bash", "echo new\n")], force=True)
    assert script.read_text() == "echo new\n"
    assert stat.S_IMODE(script.stat().st_mode) & 0o111 == 0


def test_a_symlinked_folder_is_refused_and_nothing_is_written(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    out.mkdir()
    (out / "src").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath) as caught:
        write_files(out, FILES, force=True)
    assert caught.value.reason == "goes through the symbolic link out/src"
    assert caught.value.path == "src/App.tsx"
    assert tree(outside) == {"secret.txt": "keep me\n"}
    assert tree(out) == {"src": f"-> {outside}"}  # README.md, first in the list, was not written either


def test_a_symlinked_folder_deeper_down_is_refused(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    (out / "src/components").mkdir(parents=True)
    (out / "src/components/deep").symlink_to(outside)
    with pytest.raises(UnsafePath) as caught:
        check_writes(out, FILES, force=True)
    assert caught.value.reason == f"goes through the symbolic link {out / 'src/components/deep'}"
    assert tree(outside) == {"secret.txt": "keep me\n"}


def test_a_symlinked_target_file_is_refused(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").symlink_to(outside / "secret.txt")
    with pytest.raises(UnsafePath) as caught:
        write_files(out, FILES, force=True)
    assert caught.value.reason == f"is the symbolic link {out / 'README.md'}"
    assert (outside / "secret.txt").read_text() == "keep me\n"
    assert not (out / "src").exists()


def test_a_dangling_symlink_target_is_refused(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").symlink_to(outside / "created-by-us.txt")
    with pytest.raises(UnsafePath):
        write_files(out, FILES, force=True)
    assert not (outside / "created-by-us.txt").exists()


def test_a_symlinked_output_folder_is_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    written = write_files(link, FILES)
    assert written[0] == real.resolve() / "README.md"
    assert tree(real) == {f.path: f.content for f in FILES}


def test_the_output_folder_being_a_file_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("a file\n")
    with pytest.raises(InvalidRequest) as caught:
        write_files(out, FILES)
    assert str(out) in str(caught.value)
    assert "is a file" in str(caught.value)
    assert caught.value.field == "out"
    assert out.read_text() == "a file\n"


def test_the_output_folder_below_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(InvalidRequest) as caught:
        write_files(blocker / "out", FILES)
    assert f"{blocker} is a file" in str(caught.value)


def test_a_folder_where_a_file_goes_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").mkdir()
    with pytest.raises(InvalidRequest) as caught:
        write_files(tmp_path, FILES, force=True)
    assert f"{tmp_path / 'README.md'} is a folder" in str(caught.value)
    assert not (tmp_path / "src").exists()


def test_a_file_where_a_folder_goes_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src").write_text("x")
    with pytest.raises(InvalidRequest) as caught:
        write_files(tmp_path, FILES, force=True)
    assert f"{tmp_path / 'src'} is a file, not a folder" in str(caught.value)
    assert not (tmp_path / "README.md").exists()


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "a/../../b", ".git/hooks/pre-commit", "nul"])
def test_unsafe_paths_are_checked_again(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(UnsafePath):
        write_files(out, [FILES[0], GeneratedFile(bad, "text", "x\n")])
    assert not out.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_colliding_paths_are_refused(tmp_path: Path) -> None:
    files = [GeneratedFile("src/App.tsx", "tsx", "a\n"), GeneratedFile("SRC/app.tsx", "tsx", "b\n")]
    with pytest.raises(UnsafePath):
        write_files(tmp_path / "out", files)
    assert not (tmp_path / "out").exists()


def test_a_hard_linked_target_is_refused(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.link(outside / "secret.txt", out / "README.md")
    with pytest.raises(UnsafePath) as caught:
        write_files(out, FILES, force=True)
    assert "hard links" in caught.value.reason
    assert (outside / "secret.txt").read_text() == "keep me\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_special_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "README.md")
    with pytest.raises(InvalidRequest) as caught:
        write_files(tmp_path, FILES, force=True)
    assert "not a regular file" in str(caught.value)


def test_a_folder_swapped_for_a_link_while_writing_is_not_followed(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    files = [GeneratedFile("a.txt", "text", "a\n"), GeneratedFile("sub/b.txt", "text", "b\n")]

    def swap(file: GeneratedFile, path: Path) -> None:
        if file.path == "a.txt":  # after the checks, before sub/ is created
            (out / "sub").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePath) as caught:
        write_files(out, files, on_file=swap)
    assert "symbolic link" in caught.value.reason
    assert tree(outside) == {"secret.txt": "keep me\n"}


def test_a_file_that_appears_while_writing_is_not_overwritten(tmp_path: Path, outside: Path) -> None:
    out = tmp_path / "out"
    files = [GeneratedFile("a.txt", "text", "a\n"), GeneratedFile("b.txt", "text", "b\n")]

    def plant(file: GeneratedFile, path: Path) -> None:
        if file.path == "a.txt":
            (out / "b.txt").symlink_to(outside / "secret.txt")

    with pytest.raises(OutputExists):
        write_files(out, files, force=True, on_file=plant)
    assert (outside / "secret.txt").read_text() == "keep me\n"


def test_check_writes_returns_the_targets(tmp_path: Path) -> None:
    targets = check_writes(tmp_path / "out", FILES, force=False)
    assert targets == [(tmp_path / "out").resolve() / f.path for f in FILES]
    assert not (tmp_path / "out").exists()


def test_normalized_paths_are_used(tmp_path: Path) -> None:
    (path,) = write_files(tmp_path, [GeneratedFile("./a//b/./c.txt", "text", "x\n")])
    assert path == tmp_path.resolve() / "a/b/c.txt"
    assert path.read_text() == "x\n"
