"""The small formatters every report shares: numbers as cells, file-name slugs, the
all-or-nothing mean, the summary table with its own column alignment, and matplotlib's pyplot
for the plots (:func:`pyplot`).

>>> x100(0.51234), x100(None), x100(float("nan"))
('51.23', '-', '-')
>>> fmt(3.14159, 2), fmt(41.6, 0), fmt(None, 1)
('3.14', '42', '-')
>>> num(12345.678), num(None)
('12,345.7', '-')
>>> slug("STS-B / test"), slug("??")
('STS-B_test', 'x')
>>> mean([0.5, 0.7]), mean([0.5, None])
(0.6, nan)
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from typing import Any

from embedkit.errors import ConfigError


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def x100(x: float | None) -> str:
    """A score as a cell: x 100, two decimals; ``-`` when missing or NaN."""
    if x is None or _missing(x):
        return "-"
    return f"{100 * x:.2f}"


def fmt(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals (0: rounded to an integer); ``-`` when missing."""
    if _missing(value):
        return "-"
    return f"{value:.{digits}f}" if digits else str(int(round(float(value))))


def num(x: float | None, digits: int = 1) -> str:
    """A number with thousands separators and ``digits`` decimals; ``-`` when missing."""
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def slug(text: str) -> str:
    """``text`` as a piece of a file name: runs of other characters than ASCII letters,
    digits, ``.``, ``_`` and ``-`` become one ``_`` (``x`` when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def mean(xs: Sequence[float | None]) -> float:
    """The mean, NaN when any value is missing or NaN: an average over the tasks that happened
    to score would not be comparable with one over all of them."""
    if not xs or any(_missing(x) for x in xs):
        return float("nan")
    import numpy as np

    return float(np.mean([x for x in xs if x is not None]))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False,
          left: Collection[int] = (0, 1, 3)) -> str:
    """Columns in ``left`` left-aligned, the others right-aligned; cells as they are (no
    escaping). Plain text: padded to the widest cell; ``markdown``: a pipe table."""
    if markdown:
        sep = ["---" if i in left else "---:" for i in range(len(header))]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in [header, *rows])


def pyplot(param: str) -> Any:
    """matplotlib's pyplot on the Agg backend; without matplotlib a :class:`ConfigError` on
    ``param`` (the option that asked for a plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the plot needs matplotlib: pip install 'embedkit[plot]'",
                          param=param) from None
    return plt
