"""Tables and Markdown reports from bench records (Spearman x 100, two decimals).

>>> rec = {"settings": {"tasks": ["T"], "splits": {"T": ["test"]}},
...        "results": {"cls": {"T": {"test": {"spearman": 0.51234}}, "avg": {"spearman": 0.51234}}}}
>>> print(format_table(rec))
row  T/test    avg
cls   51.23  51.23
"""

from __future__ import annotations

import math


def _cell(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def table_rows(record: dict, metric: str = "spearman") -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per result label, one column per task/split, then avg."""
    tasks = record["settings"]["tasks"]
    splits = record["settings"]["splits"]
    order = ("train", "valid", "test")
    cols = [(t, s) for t in tasks for s in sorted(splits[t], key=lambda x: (
        order.index(x) if x in order else 9, x))]
    header = ["row"] + [f"{t}/{s}" for t, s in cols] + ["avg"]
    rows = []
    for label, res in record["results"].items():
        rows.append([label] + [_cell(res[t][s][metric]) for t, s in cols] + [_cell(res["avg"][metric])])
    return header, rows


def undefined_notes(record: dict, metric: str = "spearman") -> list[str]:
    """One line per task/split whose score is undefined (the record's ``undefined`` flag: constant
    labels or cosines), saying why and that the averages including it are undefined too.

    >>> undefined_notes({"undefined": [{"row": "cls", "task": "B", "split": "test",
    ...                                  "reason": "constant labels"}]})
    ['B/test: Spearman is undefined (constant labels); the averages that include it are undefined too (rows: cls)']
    """
    rows: dict[tuple[str, str, str], list[str]] = {}
    for u in record.get("undefined") or ():
        rows.setdefault((u["task"], u["split"], u["reason"]), []).append(u["row"])
    name = metric.capitalize()
    return [f"{task}/{split}: {name} is undefined ({reason}); the averages that include it are "
            f"undefined too (rows: {', '.join(labels)})"
            for (task, split, reason), labels in rows.items()]


def format_table(record: dict, metric: str = "spearman", markdown: bool = False) -> str:
    """The results as an aligned text table or a Markdown table; undefined scores (``-``) are
    explained below it (:func:`undefined_notes`)."""
    header, rows = table_rows(record, metric)
    notes = undefined_notes(record, metric)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if notes:
            lines += ["", "`-`: undefined.", ""] + [f"- {n}" for n in notes]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    lines = [fmt(r).rstrip() for r in [header, *rows]]
    if notes:
        lines += [""] + [f"-: undefined. {n}" for n in notes]
    return "\n".join(lines)


def provenance_lines(record: dict) -> list[str]:
    """The Markdown header every report starts with: command, machine, versions."""
    m = record.get("machine", {})
    v = record.get("versions", {})
    keep = ("embedkit", "python", "torch", "transformers", "tokenizers", "numpy", "scipy",
            "scikit-learn", "faiss-cpu", "sentence-transformers")
    lines = [
        "Regenerate with:",
        "",
        "```",
        record.get("command") or "(Python API)",
        "```",
        "",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('os', '?')}",
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in keep if k in v),
    ]
    return lines


def markdown_report(record: dict, title: str | None = None) -> str:
    """A complete Markdown report of a bench record."""
    model = record["model"]
    s = record["settings"]
    t = record["timings"]
    out = [f"# {title or 'embedkit bench: ' + model['name']}", ""]
    out += provenance_lines(record)
    out += [
        f"- Model: `{model['name']}` (identity `{model['identity']}`), {model.get('num_layers')} "
        f"layers, hidden {model.get('hidden_size')}; dtype {s['dtype']}, device {s['device']}, "
        f"lowercase {s['lowercase']}",
        f"- Protocol: {s['protocol']}; max length " + ", ".join(
            f"{k} {v}" for k, v in s["max_length"].items()) + f"; batch size {s['batch_size']}",
    ]
    if s.get("post") and not s.get("fit_on"):
        out.append("- Postprocessors: saved maps only (file:), nothing fitted")
    elif s.get("post"):
        fits = {k: v["fit"]["on"] + f" ({v['fit']['n_sentences']} sentences)"
                for k, v in record["data"].items() if "fit" in v}
        out.append(f"- Postprocessors fitted on: {s['fit_on']} "
                   f"({'unique sentences' if s['fit_unique'] else 'every occurrence'}): "
                   + "; ".join(f"{k}: {v}" for k, v in fits.items()))
    out += ["", "## Spearman x 100 (cosine similarity)", "", format_table(record, markdown=True),
            "", "## Pearson x 100", "", format_table(record, "pearson", markdown=True), "",
            "## Data", "", "| task | split | pairs | skipped | sha256 | source |",
            "|---|---|---:|---:|---|---|"]
    for task, splits in record["data"].items():
        for split, d in splits.items():
            if split == "fit":
                continue
            out.append(f"| {task} | {split} | {d['n_pairs']} | {d['skipped']} | "
                       f"`{d['sha256'][:16]}` | {d['source'].split('/')[-1]} |")
    out += ["", "## Timings", "",
            f"- {t['unique_sentences']} unique sentences asked for, {t['cache_hits']} from the cache, "
            f"{t['encoded']} encoded in {t['seconds_encoding']:.1f} s "
            f"({t['sentences_per_second']:.1f} sentences/s); total {t['seconds_total']:.1f} s", ""]
    return "\n".join(out)
