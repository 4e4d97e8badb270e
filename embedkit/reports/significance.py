"""The table of a paired comparison of two predictions files (rows of
:func:`~embedkit.runs.significance.compare_predictions`)."""

from __future__ import annotations

from typing import Any

from embedkit.io.tables import text_table


def format_significance(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """``task/split  a  b  a-b  95% interval  p  significant`` (values x 100)."""
    header = ["task/split", "a", "b", "a - b", "95% interval", "p", "significant"]
    body = [[r["task_split"], f"{100 * r['value_a']:.2f}", f"{100 * r['value_b']:.2f}",
             f"{100 * r['diff']:+.2f}", f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]",
             f"{r['p_value']:.3f}", "yes" if r["significant"] else "no (noise)"]
            for r in rows]
    return text_table(header, body, markdown=markdown)
