"""Render eval/reliability.md from the JSON that ``pytest --reliability-report`` writes.

Run by ``make eval-reliability``; every row is a test that reproduces one case of the
reliability issue, with its outcome in that run.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from embedkit.provenance import library_versions, machine_description


def _key(item: str) -> tuple:
    head = item.split(".")[-1]
    return (0, int(head)) if head.isdigit() else (1, item)


def render(rows: list[dict], command: str) -> str:
    counts = Counter(r["outcome"] for r in rows)
    lines = ["# Reliability: each case, the test that reproduces it, and the result", "",
             "Regenerate with:", "", "```", command, "```", "",
             "- Machine: {cpu}, {cores} cores, {os}".format(**machine_description()),
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in library_versions().items()),
             f"- {len(rows)} cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
             "", "| item | case | test | result |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (_key(r["item"]), r["test"])):
        lines.append(f"| {r['item']} | {r['case']} | `{r['test']}` | {r['outcome']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    src, out = Path(argv[0]), Path(argv[1])
    rows = json.loads(src.read_text(encoding="utf-8"))
    out.write_text(render(rows, "make eval-reliability"), encoding="utf-8")
    print(f"wrote {out}: {len(rows)} cases")
    return 0 if all(r["outcome"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
