"""Plain-text and Markdown tables: the one renderer every report and command uses.

>>> print(text_table(["task", "score"], [["ATEC", "37.87"], ["BQ", "60.01"]]))
task  score
ATEC  37.87
BQ    60.01
>>> print(text_table(["task", "score"], [["ATEC", "37.87"]], markdown=True))
| task | score |
|---|---:|
| ATEC | 37.87 |
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool = False,
               left: int = 1, right_align: bool = False) -> str:
    """Columns padded to their widest cell (``markdown``: a pipe table whose first ``left``
    columns are left-aligned and the rest right-aligned; ``right_align`` does the same in
    plain text)."""
    if markdown:
        sep = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
        lines = ["| " + " | ".join(map(str, r)) + " |" for r in [list(header), *rows]]
        return "\n".join([lines[0], sep, *lines[1:]])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = [str(c).ljust(w) if i < left or not right_align else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
