"""Messages' Markdown becomes safe HTML: a model's answer cannot script the page."""

from __future__ import annotations

from mmstudio.web.ui.markdown import CACHED_TEXT_LIMIT, _cached, render_markdown


def test_raw_html_is_escaped_and_script_links_are_not_links() -> None:
    html = render_markdown(
        '<script>alert(1)</script> <img src=x onerror="alert(2)">\n\n[x](javascript:alert(3))'
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html
    assert 'href="javascript:' not in html


def test_code_is_highlighted_with_a_copy_button_and_unknown_languages_are_plain() -> None:
    html = render_markdown("```python\nprint('hi')\n```\n\n```nosuchlang\n<b>x</b>\n```")
    assert '<span class="nb">print</span>' in html and "data-copy" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and 'class="language-nosuchlang"' in html


def test_tables_and_empty_text() -> None:
    assert "<table>" in render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")
    assert render_markdown("") == "" and render_markdown(None) == ""


def test_only_short_texts_are_cached() -> None:
    _cached.cache_clear()
    render_markdown("short")
    render_markdown("y" * CACHED_TEXT_LIMIT)
    assert _cached.cache_info().currsize == 1
