"""The one table renderer and the one home of escaping."""

from __future__ import annotations

from embedkit.io.tables import Markdown, escape_html, escape_markdown, text_table


def test_escape_markdown_keeps_the_text_and_the_cell():
    assert escape_markdown("a|b") == "a\\|b"
    assert escape_markdown("<script>&") == "&lt;script&gt;&amp;"
    assert escape_markdown("`x`") == "\\`x\\`"
    assert escape_markdown("a\\|b") == "a\\\\\\|b"  # a backslash cannot undo the pipe's escape
    assert escape_markdown("two\nlines") == "two lines"
    assert escape_markdown(Markdown("`kept`")) == "`kept`"


def test_markdown_table_escapes_cells_and_header():
    out = text_table(["a|b", "n"], [["<i>", "1"], [Markdown("[x](y)"), "2"]], markdown=True)
    assert out.splitlines() == ["| a\\|b | n |", "|---|---:|", "| &lt;i&gt; | 1 |",
                                "| [x](y) | 2 |"]
    assert text_table(["a"], [["<i>|"]]).splitlines()[1] == "<i>|"  # plain text as it is


def test_escape_html_quotes():
    assert escape_html("<a href=\"x\">'&") == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"
