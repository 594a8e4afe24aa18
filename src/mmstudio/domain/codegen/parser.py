"""Parse a model's markdown-ish answer into files: fenced blocks, their paths, names and limits.

The prompt asks for `File: path` followed by a fenced block, but models deviate, so a block's path
is taken from, in order: its info string (```` ```tsx src/App.tsx ````, `path=`, `title=`,
`python:app/main.py`, or a bare path), the nearest non-blank line before it when that line is
nothing but a path (`File: x`, `**x**`, `### x`, `` `x` ``, `1. x`, `// x`...) or a sentence ending
in a colon that quotes exactly one path ("Create `package.json`:"), or a comment on its
first line (`// x`, `# File: x`, `<!-- x -->`), which is then removed from the content. Without any
of those the name comes from the language (`main.py`, `App.tsx`...).

Text is read line by line by `FileStream`, which keeps only the open block and one line of
look-behind, so text can be fed as it streams in; `parse_files` is the same machine fed at once.
The content is only ever text: nothing in it is run or imported.

The fence machine, the path heuristics and the naming rules are kept together (near 500 lines):
they are one job, and splitting them would scatter what one block's treatment depends on.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

from mmstudio.domain.codegen.paths import looks_like_path, path_key, safe_path
from mmstudio.domain.codegen.types import FileLimits, GeneratedFile, ParseResult, Skipped
from mmstudio.errors import UnsafePath

SHELL_INSTRUCTIONS = "shell commands without a file path (instructions, not a file)"
NO_PATH_NO_LANGUAGE = "a code block with no file path and no language"
WRITTEN_TWICE = "written twice; the later version was kept"
ENDED_EMPTY = "the model's output ended before this file's content began"
MAX_INSTRUCTION_LINES = 5


def _by_alias(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """{"python": ("py", "pyi")} → {"py": "python", "pyi": "python"}."""
    return {alias: name for name, aliases in table.items() for alias in aliases}


# Fence languages as models write them → one name each.
_ALIASES = _by_alias(
    {
        "javascript": ("js", "mjs", "cjs"),
        "typescript": ("ts",),
        "python": ("py", "python3", "py3"),
        "yaml": ("yml",),
        "bash": ("sh", "shell", "zsh"),
        "markdown": ("md",),
        "go": ("golang",),
        "rust": ("rs",),
        "dockerfile": ("docker",),
        "makefile": ("make",),
        "powershell": ("ps1", "pwsh"),
        "batch": ("bat", "cmd"),
        "console": ("shell-session", "shellsession", "sh-session"),
        "html": ("htm",),
        "text": ("plaintext", "plain", "txt"),
        "cpp": ("c++",),
        "csharp": ("cs", "c#"),
        "ruby": ("rb",),
        "kotlin": ("kt",),
    }
)

_INFERRED_NAMES = {
    "python": "main.py",
    "javascript": "index.js",
    "typescript": "index.ts",
    "jsx": "App.jsx",
    "tsx": "App.tsx",
    "vue": "App.vue",
    "svelte": "App.svelte",
    "html": "index.html",
    "css": "styles.css",
    "scss": "styles.scss",
    "json": "data.json",
    "yaml": "config.yaml",
    "toml": "config.toml",
    "sql": "schema.sql",
    "go": "main.go",
    "rust": "main.rs",
    "java": "Main.java",
    "dockerfile": "Dockerfile",
    "makefile": "Makefile",
    "markdown": "README.md",
    "bash": "script.sh",
    "powershell": "script.ps1",
    "batch": "script.bat",
}
_SHELLS = frozenset({"bash", "console", "powershell", "batch"})
# File extensions → language, for files whose fence names none.
_EXTENSIONS = {
    **{name: name for name in ("tsx", "jsx", "vue", "svelte", "html", "css", "scss", "sass", "less")},
    **{name: name for name in ("json", "toml", "sql", "go", "java", "swift", "c", "php", "xml", "ini")},
    **{name: name for name in ("graphql", "prisma", "bash")},
    **_by_alias(
        {
            "python": ("py", "pyi"),
            "javascript": ("js", "mjs", "cjs"),
            "typescript": ("ts", "mts", "cts"),
            "html": ("htm",),
            "yaml": ("yaml", "yml"),
            "rust": ("rs",),
            "kotlin": ("kt",),
            "c": ("h",),
            "cpp": ("cpp", "cc", "hpp"),
            "csharp": ("cs",),
            "ruby": ("rb",),
            "bash": ("sh", "zsh"),
            "powershell": ("ps1",),
            "batch": ("bat", "cmd"),
            "markdown": ("md", "markdown"),
            "xml": ("svg",),
            "ini": ("cfg",),
            "graphql": ("gql",),
            "text": ("txt",),
        }
    ),
}
_FILENAMES = {"dockerfile": "dockerfile", "containerfile": "dockerfile", "makefile": "makefile"}
_LANGUAGES = frozenset(
    {*_ALIASES, *_ALIASES.values(), *_INFERRED_NAMES, *_EXTENSIONS.values()}
    | {"diff", "json5", "dotenv", "env", "lua", "r", "dart", "scala", "elixir", "haskell", "nginx"}
    | {"mermaid", "csv", "astro", "terraform", "hcl", "proto", "protobuf", "regex", "http", "jinja"}
)
# Single tokens that look like file names but, alone on a line, are usually a heading about a tool.
_PROSE_NAMES = frozenset(
    {"node.js", "next.js", "nuxt.js", "vue.js", "react.js", "express.js", "three.js", "d3.js"}
    | {"chart.js", "alpine.js", "angular.js", "ember.js", "backbone.js", "asp.net", ".net"}
)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATTRIBUTE = re.compile(
    r"""(?:^|\s)(?P<key>path|file|filename|title|name)\s*=\s*"""
    r"""(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<bare>[^\s"'}]+))""",
    re.I,
)
_LANG_AND_PATH = re.compile(r"^([A-Za-z][\w+#.-]+):(?!//)(\S+)$")
_LEADER = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d{1,3}[.)]\s+|/{2,}\s*|--\s+|<!--\s*|/\*+\s*|;+\s*)")
_TRAILER = re.compile(r"\s*(?:-->|\*+/)$")
_QUOTED = re.compile(r"`([^`\s]+)`")
_LABEL = re.compile(r"^(?:file\s*name|file|path)(?P<colon>\s*:\s*|\s+)", re.I)
# "src/App.tsx (new)", "app.py - the entry point" (with a hyphen, an en dash or an em dash)
_DESCRIPTION = re.compile(r"\s+(?:\(|[\u2014\u2013-]\s).*$")
_DECORATIVE = frozenset({"So", "Sk", "Mn", "Cf"})  # emoji and their modifiers: "📄 src/App.tsx"
_COMMENT = re.compile(
    r"^\s*(?:(?://+|#+|--|;+)\s+(?P<line>.+?)|/\*+\s*(?P<block>.+?)\s*\*+/|<!--\s*(?P<html>.+?)\s*-->)\s*$"
)


@dataclass(frozen=True, slots=True)
class _Fence:
    indent: int
    char: str
    length: int
    info: str


def _fence(line: str) -> _Fence | None:
    if "```" not in line and "~~~" not in line:
        return None
    match = _FENCE.match(line)
    if match is None:
        return None
    fence, info = match["fence"], match["info"].strip()
    if fence[0] == "`" and "`" in info:  # CommonMark: ```a``` on one line is inline code, not a fence
        return None
    return _Fence(len(match["indent"].expandtabs(4)), fence[0], len(fence), info)


def _normalize_language(name: str) -> str:
    name = name.strip().lower()
    return _ALIASES.get(name, name)


def _parse_info(info: str) -> tuple[str | None, str | None]:
    """(language, path) from a fence's info string; either may be missing."""
    info = info.strip().strip("{}").strip()
    path: str | None = None
    attribute = _ATTRIBUTE.search(info)
    if attribute is not None:
        value = attribute["double"] or attribute["single"] or attribute["bare"] or ""
        # A title may be a caption ("Counter component"); path=, file= and filename= are always paths.
        if attribute["key"].lower() not in ("title", "name") or looks_like_path(value):
            path = value or None
        info = info[: attribute.start()] + info[attribute.end() :]
    tokens = info.split()
    if not tokens:
        return None, path
    language: str | None = None
    first, rest = tokens[0], tokens[1:]
    both = _LANG_AND_PATH.match(first)
    if both is not None:
        language, path = both[1], path or both[2]
    elif first.lower() in _LANGUAGES or not looks_like_path(first):
        language = first
    elif path is None:
        path = first
    if path is None:
        path = next((t for t in rest if looks_like_path(t)), None)
    return (_normalize_language(language) if language else None), path


def _label_path(text: str) -> tuple[str | None, bool]:
    """The single path token a line consists of, once decoration is removed, and whether it was labelled."""
    text = _DESCRIPTION.sub("", text.replace("**", "").replace("`", "").strip())
    labelled = False
    previous = None
    while text != previous:
        previous = text
        while text and unicodedata.category(text[0]) in _DECORATIVE:
            text = text[1:]
        text = _LEADER.sub("", text.strip(), count=1).strip()
        text = _TRAILER.sub("", text).strip()
        label = _LABEL.match(text)
        if label is not None:
            # "File: x" names a path whatever x looks like; "File x" only when x looks like one.
            text, labelled = text[label.end() :], labelled or ":" in label["colon"]
        text = text.strip().strip("\"'*").removesuffix(":").strip()
    if not text or any(c.isspace() for c in text):
        return None, labelled
    return text, labelled


def _line_path(line: str) -> str | None:
    """A path when the whole line names one (`File: x`, `**x**`, `### x`...), else None (prose)."""
    token, labelled = _label_path(line)
    if token is None:
        return None
    if labelled:
        return token
    if "://" in token or token.lower() in _PROSE_NAMES or not looks_like_path(token):
        return None
    return token


def _introduced_path(line: str) -> str | None:
    """The one `code`-quoted path in a sentence that introduces the block: "Create `package.json`:"."""
    text = line.strip().removesuffix("**").rstrip()
    if not text.endswith(":"):
        return None
    tokens = [
        t
        for t in _QUOTED.findall(text)
        if "://" not in t and t.lower() not in _PROSE_NAMES and looks_like_path(t)
    ]
    return tokens[0] if len(tokens) == 1 else None


def _comment_path(line: str, language: str | None) -> str | None:
    """A path written as a comment (`// x`, `# File: x`, `<!-- x -->`...) on a block's first line."""
    match = _COMMENT.match(line)
    if match is None or (language == "markdown" and match["html"] is None):
        return None  # in Markdown, "# Title" is a heading, not a comment
    return _line_path(match["line"] or match["block"] or match["html"])


def _language(fence_language: str | None, path: str) -> str:
    if fence_language and fence_language != "text" and re.fullmatch(r"[a-z0-9+#._-]{1,30}", fence_language):
        return fence_language
    name = path.rsplit("/", 1)[-1].lower()
    if name in _FILENAMES:
        return _FILENAMES[name]
    if name.startswith(".env"):
        return "dotenv"
    stem, dot, extension = name.rpartition(".")
    return _EXTENSIONS.get(extension, "text") if dot and stem else "text"


def _kb(size: int, *, up: bool = False) -> str:
    """Kilobytes to one decimal; a size rounds up and a limit down, so "over" never reads as equal."""
    tenths = math.ceil(size / 100) if up else size // 100
    return f"{tenths / 10:g}"


@dataclass
class _Block:
    fence: _Fence
    language: str | None
    info_path: str | None
    line_path: str | None
    lines: list[str] = field(default_factory=list)
    nested: list[int] = field(default_factory=list)  # lengths of the fences opened inside the block
    last_is_fence: bool = False  # the last line opened or closed a nested block


class _Collector:
    """Turns finished blocks into files: names, duplicates, folder clashes and limits, in order."""

    def __init__(self, limits: FileLimits) -> None:
        self.limits = limits
        self.files: dict[str, GeneratedFile] = {}  # by path_key, in order of first appearance
        self.folders: set[str] = set()
        self.skipped: list[Skipped] = []
        self.total = 0
        self.over_total = False

    def _skip(self, path: str | None, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    def _taken(self, key: str) -> bool:
        return key in self.files or key in self.folders

    def _inferred(self, language: str) -> str:
        name = _INFERRED_NAMES[language]
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, ""
        number = 1
        while self._taken(path_key(name)):
            number += 1
            name = f"{stem}-{number}.{extension}" if extension else f"{stem}-{number}"
        return name

    def add(self, raw_path: str | None, language: str | None, lines: list[str]) -> GeneratedFile | None:
        content = "\n".join(lines) + "\n" if lines else ""
        if raw_path is None:
            if language in _SHELLS and (
                language == "console" or sum(1 for ln in lines if ln.strip()) <= MAX_INSTRUCTION_LINES
            ):
                self._skip(None, SHELL_INSTRUCTIONS)
                return None
            if language in (None, "text"):
                self._skip(None, NO_PATH_NO_LANGUAGE)
                return None
            if language not in _INFERRED_NAMES:
                self._skip(None, f"a code block with no file path and an unknown language ({language!r})")
                return None
            path = self._inferred(language)
        else:
            try:
                path = safe_path(raw_path)
            except UnsafePath as error:
                self._skip(raw_path, error.reason)
                return None
        file = GeneratedFile(path, _language(language, path), content)
        return self._keep(file)

    def _keep(self, file: GeneratedFile) -> GeneratedFile | None:
        limits, path, key = self.limits, file.path, path_key(file.path)
        if file.size > limits.max_file_bytes:
            size, limit = _kb(file.size, up=True), _kb(limits.max_file_bytes)
            self._skip(path, f"is {size} KB, over the limit of {limit} KB per file")
            return None
        if key in self.folders:
            self._skip(path, f"{path!r} is also the name of a folder in this project")
            return None
        parts = key.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self.files:
                folder = "/".join(path.split("/")[:depth])
                self._skip(path, f"its folder {folder!r} is also written as a file")
                return None
        previous = self.files.get(key)
        if previous is not None:
            total = self.total - previous.size + file.size
            if total > limits.max_total_bytes:
                self._skip(path, f"the project is over {_kb(limits.max_total_bytes)} KB in total")
                return None
            # A rewrite keeps the first spelling (src/App.tsx, not SRC/app.tsx), so callers replace by path.
            file = GeneratedFile(previous.path, file.language, file.content)
            self.files[key], self.total = file, total
            self._skip(previous.path, WRITTEN_TWICE)
            return file
        if len(self.files) >= limits.max_files:
            self._skip(path, f"more than {limits.max_files} files")
            return None
        if self.over_total or self.total + file.size > limits.max_total_bytes:
            # Once one file does not fit, later ones are left out too, so the project is cut at one place.
            self.over_total = True
            self._skip(path, f"the project is over {_kb(limits.max_total_bytes)} KB in total")
            return None
        self.files[key] = file
        self.total += file.size
        self.folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
        return file


def _dedent(line: str, indent: int) -> str:
    """Remove up to `indent` leading spaces (a fence indented in a list item indents its content too)."""
    start = 0
    while start < indent and start < len(line) and line[start] == " ":
        start += 1
    return line[start:]


class FileStream:
    """Incremental: feed text as it arrives; get each file as soon as its closing fence is seen.

    Only complete lines are read; the unfinished last line waits for the next piece. `finish()`
    gives the same result as `parse_files` on everything fed, however the text was split.
    """

    def __init__(self, *, limits: FileLimits = FileLimits()) -> None:
        self._collector = _Collector(limits)
        self._text = ""
        self._partial: list[str] = []  # the unfinished last line, in pieces
        self._block: _Block | None = None
        self._line_path: str | None = None  # the path the last non-blank line named, outside blocks
        self._result: ParseResult | None = None

    @property
    def text(self) -> str:
        """Everything fed so far (cheap to read after every piece)."""
        return self._text

    def feed(self, text: str) -> list[GeneratedFile]:
        """Read a piece of the output; return the files its closing fences completed.

        A file written again comes again, under the path it first had: callers replace by path.
        """
        if self._result is not None:
            raise RuntimeError("this FileStream is finished")
        if not text:
            return []
        # Appending to a string nothing else refers to grows it in place (CPython), so keeping the
        # whole text costs about the length of each piece, however often `text` is read.
        whole, self._text = self._text, ""
        whole += text
        self._text = whole
        done: list[GeneratedFile] = []
        end = text.find("\n")
        if end < 0:
            self._partial.append(text)
            return done
        self._partial.append(text[:end])
        self._read_line("".join(self._partial), done)
        self._partial = []
        start = end + 1
        while (end := text.find("\n", start)) >= 0:
            self._read_line(text[start:end], done)
            start = end + 1
        if start < len(text):
            self._partial.append(text[start:])
        return done

    def finish(self) -> ParseResult:
        """The final result: files in order of first appearance and what was left out, with why."""
        if self._result is None:
            if self._partial:
                self._read_line("".join(self._partial), [])
                self._partial = []
            if self._block is not None:
                self._close_unterminated(self._block)
                self._block = None
            self._result = ParseResult(list(self._collector.files.values()), list(self._collector.skipped))
        return ParseResult(list(self._result.files), list(self._result.skipped))

    def _read_line(self, line: str, done: list[GeneratedFile]) -> None:
        line = line.removesuffix("\r")
        block = self._block
        if block is None:
            self._read_outside(line)
        elif self._read_inside(block, line):
            self._block = None
            file = self._close(block)
            if file is not None:
                done.append(file)

    def _read_outside(self, line: str) -> None:
        fence = _fence(line)
        if fence is not None:
            language, info_path = _parse_info(fence.info)
            self._block = _Block(fence, language, info_path, self._line_path)
            self._line_path = None
        elif line.strip():
            self._line_path = _line_path(line) or _introduced_path(line)

    def _read_inside(self, block: _Block, line: str) -> bool:
        """Take one line of an open block; True when it is the block's closing fence."""
        fence = _fence(line)
        block.last_is_fence = False
        if fence is not None and fence.char == block.fence.char:
            block.last_is_fence = True
            if fence.info:
                # ```bash inside a ``` block opens a nested block (a README's examples), closed by a bare ```
                block.nested.append(fence.length)
            elif (
                block.nested
                and fence.length >= block.nested[-1]
                and (fence.length < block.fence.length or block.nested[-1] >= block.fence.length)
            ):
                block.nested.pop()
            elif fence.length >= block.fence.length and fence.indent <= block.fence.indent + 3:
                return True
            else:
                block.last_is_fence = False
        block.lines.append(_dedent(line, block.fence.indent))
        return False

    def _path_of(self, block: _Block) -> str | None:
        """The block's path by precedence; a first-line comment used as the path leaves the content."""
        if block.info_path is not None:
            return block.info_path
        if block.line_path is not None:
            return block.line_path
        if block.lines:
            path = _comment_path(block.lines[0], block.language)
            if path is not None:
                del block.lines[0]
                return path
        return None

    def _close(self, block: _Block) -> GeneratedFile | None:
        return self._collector.add(self._path_of(block), block.language, block.lines)

    def _close_unterminated(self, block: _Block) -> None:
        """The output ended inside a block: keep what was written, less a half-written closing fence."""
        lines = block.lines
        if lines and not block.last_is_fence:
            last = lines[-1].strip()
            if last and set(last) == {block.fence.char} and len(last) < block.fence.length:
                lines.pop()
        if not lines:
            raw = block.info_path or block.line_path
            self._collector.skipped.append(Skipped(raw, ENDED_EMPTY))
            return
        self._close(block)


def parse_files(text: str, *, limits: FileLimits = FileLimits()) -> ParseResult:
    """Parse a whole model output into files; bad output is skipped with a reason, never raised."""
    stream = FileStream(limits=limits)
    stream.feed(text)
    return stream.finish()
