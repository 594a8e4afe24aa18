"""safe_path, looks_like_path, check_tree and project_slug: what a model may name, and how."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmstudio.domain.codegen.paths import (
    MAX_DEPTH,
    MAX_PATH_CHARS,
    check_tree,
    looks_like_path,
    project_slug,
    safe_path,
)
from mmstudio.errors import InvalidRequest, UnsafePath


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("src/App.tsx", "src/App.tsx"),
        ("./src/App.tsx", "src/App.tsx"),
        ("  src/App.tsx \n", "src/App.tsx"),
        ("`src/App.tsx`", "src/App.tsx"),
        ("**src/App.tsx**", "src/App.tsx"),
        ("*src/App.tsx*", "src/App.tsx"),
        ("**`src/App.tsx`**:", "src/App.tsx"),
        ("src/App.tsx:", "src/App.tsx"),
        ('"src/App.tsx"', "src/App.tsx"),
        ("'src/App.tsx'", "src/App.tsx"),
        ("src\\components\\Counter.tsx", "src/components/Counter.tsx"),
        ("src//a///b.py", "src/a/b.py"),
        ("a/./b/./c.py", "a/b/c.py"),
        ("src/", "src"),
        ("src/.", "src"),
        (".gitignore", ".gitignore"),
        (".github/workflows/ci.yml", ".github/workflows/ci.yml"),
        (".env.example", ".env.example"),
        ("Dockerfile", "Dockerfile"),
        ("my notes/first draft.txt", "my notes/first draft.txt"),
        ("console.log", "console.log"),  # starts with "con" but is not the device CON
        ("com10.txt", "com10.txt"),
        ("nul_handler.py", "nul_handler.py"),
        ("a/b.git/c.txt", "a/b.git/c.txt"),
        ("src/__init__.py", "src/__init__.py"),
    ],
)
def test_safe_path_normalizes(raw: str, expected: str) -> None:
    assert safe_path(raw) == expected


def test_safe_path_applies_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "café/menü.txt")
    assert decomposed != "café/menü.txt"
    assert safe_path(decomposed) == unicodedata.normalize("NFC", "café/menü.txt")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "the path is empty"),
        ("   ", "the path is empty"),
        ("``", "the path is empty"),
        ("./", "the path is empty"),
        ("/etc/passwd", "it is absolute"),
        ("\\etc\\passwd", "it is absolute"),
        ("~/.ssh/authorized_keys", "home folder"),
        ("~root/x", "home folder"),
        ("../x", "'..'"),
        ("../../etc/passwd", "'..'"),
        ("src/../../x", "'..'"),
        ("a/./b/../c", "'..'"),
        ("a/b/..", "'..'"),  # stays inside once resolved, refused all the same
        ("..\\..\\x", "'..'"),
        ("C:\\Windows\\x", "Windows drive"),
        ("C:x", "Windows drive"),
        ("c:/x", "Windows drive"),
        ("\\\\server\\share\\x", "network (UNC)"),
        ("//server/share", "network (UNC)"),
        ("a\x00b", "control character U+0000"),
        ("a\nb.txt", "control character U+000A"),
        ("a\tb.txt", "control character U+0009"),
        ("a\x1bb.txt", "control character U+001B"),
        ("evil\u202etxt.exe", "control character U+202E"),  # right-to-left override
        ("a\u200bb.txt", "control character U+200B"),  # zero-width space
        ("a<b.txt", "'<'"),
        ("a>b.txt", "'>'"),
        ("src/a:b.txt", "':'"),
        ('a"b.txt', "'\"'"),
        ("a|b.txt", "'|'"),
        ("a?b.txt", "'?'"),
        ("src/a*b.txt", "'*'"),
        ("foo./x.txt", "ends with a dot or a space"),
        ("foo /x.txt", "ends with a dot or a space"),
        ("x/foo.", "ends with a dot or a space"),
        ("x/...", "ends with a dot or a space"),
        ("CON", "reserved device name"),
        ("con", "reserved device name"),
        ("nul.txt", "reserved device name"),
        ("src/aux.tar.gz", "reserved device name"),
        ("COM1", "reserved device name"),
        ("lpt9.log", "reserved device name"),
        ("src/PRN/x.txt", "reserved device name"),
        (".git/hooks/pre-commit", ".git folder"),
        ("a/.GIT/config", ".git folder"),
        ("GIT~1/hooks/post-checkout", ".git folder"),
        ("file:///etc/passwd", "a URL"),
        ("http://example.com/x.js", "a URL"),
        ("https://example.com/x.js", "a URL"),
        ("a" * (MAX_PATH_CHARS + 1), f"longer than {MAX_PATH_CHARS}"),
        ("/".join(["d"] * (MAX_DEPTH + 1)), f"deeper than {MAX_DEPTH}"),
    ],
)
def test_safe_path_refuses(raw: str, reason: str) -> None:
    with pytest.raises(UnsafePath) as caught:
        safe_path(raw)
    assert reason in caught.value.reason
    assert caught.value.path == raw  # the raw path is kept, to show the user what the model wrote


def test_each_refusal_has_its_own_reason() -> None:
    reasons = set()
    for raw in ["", "/a", "~/a", "../a", "C:/a", "//s/a", "a\x00", "a<b", "a.", "con", ".git/a", "http://a"]:
        with pytest.raises(UnsafePath) as caught:
            safe_path(raw)
        reasons.add(caught.value.reason)
    assert len(reasons) == 12


def test_limits_are_inclusive() -> None:
    assert safe_path("a" * MAX_PATH_CHARS) == "a" * MAX_PATH_CHARS
    deep = "/".join(["d"] * MAX_DEPTH)
    assert safe_path(deep) == deep


def test_unsafe_path_is_an_invalid_request_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        safe_path("../../etc/passwd")
    assert str(caught.value) == "unsafe path '../../etc/passwd': it climbs out of its folder with '..'"
    assert caught.value.field == "path"


@given(st.text(max_size=80))
def test_whatever_comes_out_is_relative_clean_and_stable(raw: str) -> None:
    try:
        path = safe_path(raw)
    except UnsafePath:
        return
    segments = path.split("/")
    assert path and not path.startswith(("/", "~"))
    assert "\\" not in path and "\x00" not in path
    assert all(s not in ("", ".", "..") for s in segments)
    assert all(not s.endswith((" ", ".")) for s in segments)
    assert len(path) <= MAX_PATH_CHARS and len(segments) <= MAX_DEPTH
    assert safe_path(path) == path


@given(st.lists(st.sampled_from(["a", "..", ".", "", "b.txt", "\\", "C:", "~", ".git"]), max_size=8))
def test_no_combination_of_segments_climbs_out(parts: list[str]) -> None:
    try:
        path = safe_path("/".join(parts))
    except UnsafePath:
        return
    assert ".." not in path.split("/")
    assert ".git" not in path.split("/")


@pytest.mark.parametrize(
    "token",
    [
        "src/App.tsx",
        "App.tsx",
        "a\\b",
        ".gitignore",
        ".env.example",
        "Dockerfile",
        "Makefile",
        "LICENSE",
        "go.mod",
    ],
)
def test_looks_like_path(token: str) -> None:
    assert looks_like_path(token)


@pytest.mark.parametrize(
    "token", ["", "Here is the component:", "python", "e.g.", "1.2.3", "etc.", "README md"]
)
def test_does_not_look_like_path(token: str) -> None:
    assert not looks_like_path(token)


def test_check_tree_accepts_a_normal_tree() -> None:
    check_tree(["README.md", "src/App.tsx", "src/components/Counter.tsx", "src/index.ts"])


@pytest.mark.parametrize(
    ("paths", "reason"),
    [
        (["src/App.tsx", "src/app.tsx"], "same file as 'src/App.tsx'"),
        (["SRC/a.py", "src/A.py"], "same file as 'SRC/a.py'"),
        (["src", "src/a.py"], "its folder 'src' is also a file"),
        (["src/a.py", "SRC"], "also a folder of 'src/a.py'"),
    ],
)
def test_check_tree_refuses_collisions(paths: list[str], reason: str) -> None:
    with pytest.raises(UnsafePath) as caught:
        check_tree(paths)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My Todo App!", "my-todo-app"),
        ("  --Hello,   World--  ", "hello-world"),
        ("Café Crème", "cafe-creme"),
        ("", "project"),
        ("!!!", "project"),
        ("日本語", "project"),
        ("../../etc", "etc"),
        ("..", "project"),
        ("con", "con-project"),
        ("LPT1", "lpt1-project"),
        ("x" * 100, "x" * 60),
        ("a" * 59 + " b", "a" * 59),  # cut at 60, without a dangling dash
    ],
)
def test_project_slug(name: str, slug: str) -> None:
    assert project_slug(name) == slug


@given(st.text(max_size=100))
def test_a_slug_is_always_a_safe_single_name(name: str) -> None:
    slug = project_slug(name)
    assert 0 < len(slug) <= 70
    assert safe_path(slug) == slug
    assert project_slug(slug) == slug  # a slug passed again comes back unchanged
