"""Markdown to safe HTML for messages: CommonMark + tables and strikethrough, code highlighted.

Raw HTML in a message is escaped, never rendered, and links can only be http(s), mailto or
relative (markdown-it's link validation), so a model's answer cannot script the page.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True)


def _fence(self: object, tokens: list[Token], idx: int, _options: object, _env: object) -> str:
    token = tokens[idx]
    return _highlight(token.content, token.info)


def _highlight(code: str, info: str) -> str:
    language = info.strip().split()[0] if info and info.strip() else ""
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _FORMATTER) if lexer is not None else escape(code)
    label = escape(language or "text")
    return (
        f'<div class="code"><div class="code-bar"><span>{label}</span>'
        f'<button type="button" class="copy" data-copy>Copy</button></div>'
        f'<pre class="highlight"><code class="language-{label}">{body}</code></pre></div>'
    )


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule(
        "code_block", lambda self, tokens, idx, options, env: _highlight(tokens[idx].content, "")
    )
    return md


def _render(text: str) -> str:
    html: str = _parser().render(text)
    return html


# Bounded by count and by size: at most 1,024 texts of under 8,000 characters (a few MB of HTML in
# practice, ~25 MB at worst), enough for the messages of a 1,000-message branch to re-render from it.
CACHED_TEXT_LIMIT = 8_000


@lru_cache(maxsize=1024)
def _cached(text: str) -> str:
    return _render(text)


def render_markdown(text: str | None) -> str:
    """Safe HTML for `text` (memoized: a long conversation re-renders the same messages often)."""
    if not text:
        return ""
    return _cached(text) if len(text) < CACHED_TEXT_LIMIT else _render(text)


def pygments_css() -> str:
    """Token colours for light and dark themes (served as /static/pygments.css)."""
    light = HtmlFormatter(style="friendly").get_style_defs('[data-theme="light"] .highlight')  # type: ignore[no-untyped-call]
    dark = HtmlFormatter(style="monokai").get_style_defs('[data-theme="dark"] .highlight')  # type: ignore[no-untyped-call]
    return f"{light}\n{dark}\n"
