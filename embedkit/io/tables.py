"""Plain-text and Markdown tables: the one renderer every report and command uses, and the one
home of escaping (Markdown and HTML text).

>>> print(text_table(["task", "score"], [["ATEC", "37.87"], ["BQ", "60.01"]]))
task  score
ATEC  37.87
BQ    60.01
>>> print(text_table(["task", "score"], [["ATEC", "37.87"]], markdown=True))
| task | score |
|---|---:|
| ATEC | 37.87 |
>>> print(text_table(["model"], [["a|b <script>"], [Markdown("`code`")]], markdown=True))
| model |
|---|
| a\\|b &lt;script&gt; |
| `code` |
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

#: what a Markdown cell escapes: the backslash first (so that an escape in the text cannot undo
#: the next one), the pipe that would end the cell, HTML (``&``, ``<``, ``>``: raw tags or
#: entities otherwise) and the backtick (an unpaired one would start a code span, inside which
#: the entities above would show literally)
_MARKDOWN = {"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "\\`",
             "\r": " ", "\n": " "}


class Markdown(str):
    """Text that is already Markdown (a code span, a link): :func:`text_table` keeps it as is.
    Escape the user's parts of it with :func:`escape_markdown`."""

    __slots__ = ()


def escape_markdown(x: Any) -> str:
    """``x`` as Markdown text that shows literally, also inside a table cell (one line).

    >>> escape_markdown("a|b `c` <i>&")
    'a\\\\|b \\\\`c\\\\` &lt;i&gt;&amp;'
    """
    if isinstance(x, Markdown):
        return str(x)
    return "".join(_MARKDOWN.get(c, c) for c in str(x))


def escape_html(x: Any) -> str:
    """``x`` as HTML text, quotes escaped too (safe in an attribute).

    >>> escape_html('<b title="x">&')
    '&lt;b title=&quot;x&quot;&gt;&amp;'
    """
    return html.escape(str(x), quote=True)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool = False,
               left: int = 1, right_align: bool = False) -> str:
    """Columns padded to their widest cell (``markdown``: a pipe table whose first ``left``
    columns are left-aligned and the rest right-aligned, every cell escaped with
    :func:`escape_markdown` unless it is :class:`Markdown`; ``right_align`` does the same
    alignment in plain text)."""
    if markdown:
        sep = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
        lines = ["| " + " | ".join(escape_markdown(c) for c in r) + " |"
                 for r in [list(header), *rows]]
        return "\n".join([lines[0], sep, *lines[1:]])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if i < left or not right_align else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
