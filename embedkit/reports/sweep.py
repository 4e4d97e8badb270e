"""Tables, Markdown and figures of a whitening sweep record
(:func:`~embedkit.runs.sweep.run_sweep`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from embedkit.aliases import JSONDict, StrPath
from embedkit.io.atomic import atomic_path
from embedkit.postprocess.spec import _num  # the number format of whitening specs
from embedkit.reports._format import mean, slug, table, x100
from embedkit.reports.bench import (
    provenance_lines,
    run_title,
    speed_line,
    sweep_classification_section,
)
from embedkit.reports.sweep_plots import _pyplot, sweep_figure
from embedkit.runs.record import SweepRecord


def summary_rows(record: SweepRecord) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (Spearman x 100)."""
    s = record["settings"]
    sel, rep = s["select_on"], s["report_on"]
    header = ["task", "pooling", f"raw/{rep}", "best setting", f"best/{sel}", f"best/{rep}",
              f"classic/{rep}"]
    rows = []
    per_pooling: dict[str, dict[str, list[float]]] = {}
    for task, by_pool in record["results"].items():
        for pooling, r in by_pool.items():
            best = r["best"] or {}
            rows.append([task, pooling, x100(r["raw"]["report"]), best.get("post", "-"),
                         x100(best.get("select")), x100(best.get("report")),
                         x100(r["classic"]["report"])])
            acc = per_pooling.setdefault(pooling, {"raw": [], "best": [], "classic": []})
            acc["raw"].append(r["raw"]["report"])
            acc["best"].append(best.get("report", float("nan")))
            acc["classic"].append(r["classic"]["report"])
    if len(record["results"]) > 1:
        for pooling, acc in per_pooling.items():
            rows.append(["avg", pooling, x100(mean(acc["raw"])), "(per task)", "",
                         x100(mean(acc["best"])), x100(mean(acc["classic"]))])
    return header, rows


def format_sweep_table(record: SweepRecord, markdown: bool = False) -> str:
    """The summary: per task raw, best setting (chosen on select_on), its scores, classic."""
    return table(*summary_rows(record), markdown=markdown)


def _grid_table(result: dict, report_on: str, select_on: str) -> str:
    """A Markdown table of one task's grid: rows (beta, gamma), columns k, cells
    ``report (select)`` x 100."""
    ks = list(dict.fromkeys(s["k"] for s in result["settings"]))
    rows: dict[tuple, JSONDict] = {}
    for s in result["settings"]:
        rows.setdefault((s["beta"], s["gamma"]), {})[s["k"]] = s
    out = ["| beta | gamma | " + " | ".join(f"k={k}" for k in ks) + " |",
           "|---:|---:|" + "---:|" * len(ks)]
    best = (result["best"] or {}).get("index")
    for (beta, gamma), by_k in rows.items():
        cells = []
        for k in ks:
            s = by_k.get(k)
            if s is None:
                cells.append("-")
                continue
            cell = f"{x100(s['report'])} ({x100(s['select'])})"
            if best is not None and result["settings"][best] is s:
                cell = f"**{cell}**"
            cells.append(cell)
        out.append(f"| {_num(beta)} | {_num(gamma)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


_HEADLINE_SETTINGS = ((1.0, 1.0), (0.0, 0.0), (0.5, 0.5))


def headline_table(record: SweepRecord, pairs: Sequence[tuple[float, float]] = _HEADLINE_SETTINGS) -> str:
    """The published hyperparameter table's shape, on the report split: per pooling a raw row,
    then one row per (beta, gamma) with each task's scores at every k of the grid
    (``k1 / k2 / ... / all``). Pairs missing from the grid are left out.

    >>> rec = {"settings": {"report_on": "test"}, "results": {"T": {"cls": {
    ...     "raw": {"report": 0.5}, "settings": [
    ...         {"beta": 1.0, "gamma": 1.0, "k": 2, "report": 0.6},
    ...         {"beta": 1.0, "gamma": 1.0, "k": "all", "report": 0.7}]}}}}
    >>> print(headline_table(rec))
    | pooling | setting | T |
    |---|---|---:|
    | cls | raw | 50.00 |
    | cls | beta=1, gamma=1: k=2 / all | 60.00 / 70.00 |
    """
    tasks = list(record["results"])
    poolings = list(dict.fromkeys(p for by_pool in record["results"].values() for p in by_pool))
    out = ["| pooling | setting | " + " | ".join(tasks) + " |",
           "|---|---|" + "---:|" * len(tasks)]
    for pooling in poolings:
        res = {t: record["results"][t].get(pooling) for t in tasks}
        out.append(f"| {pooling} | raw | " + " | ".join(
            x100(r["raw"]["report"]) if r else "-" for r in res.values()) + " |")
        for beta, gamma in pairs:
            cells, ks = [], None
            for r in res.values():
                found = [x for x in (r or {}).get("settings", [])
                         if float(x["beta"]) == beta and float(x["gamma"]) == gamma]
                if not found:
                    cells.append("-")
                    continue
                ks = ks or [str(x["k"]) for x in found]
                cells.append(" / ".join(x100(x["report"]) for x in found))
            if ks is None:
                continue
            out.append(f"| {pooling} | beta={_num(beta)}, gamma={_num(gamma)}: k="
                       f"{' / '.join(ks)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _plot_name(task: str, pooling: str) -> str:
    """File name of a task's plot: ``<task>-<pooling>.png`` (odd characters replaced)."""
    return f"{slug(task)}-{slug(pooling)}.png"


def write_plots(record: SweepRecord, folder: StrPath) -> list[Path]:
    """One PNG per task and pooling (:func:`~embedkit.reports.sweep_plots.sweep_figure`).
    Needs matplotlib (``plot`` extra)."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task, by_pool in record["results"].items():
        for pooling in by_pool:
            fig = sweep_figure(record, task, pooling)
            try:
                path = folder / _plot_name(task, pooling)
                with atomic_path(path, suffix=".png") as tmp:
                    fig.savefig(tmp, format="png", dpi=100)
                written.append(path)
            finally:
                plt.close(fig)
    return written


def sweep_markdown(record: SweepRecord, plots: Sequence[Path] | None = None,
                   markdown_path: StrPath | None = None) -> str:
    """A Markdown report: how to regenerate it, machine, versions, the summary and the grids."""
    s = record["settings"]
    m = record["model"]
    t = record["timings"]
    occurrences = "unique sentences" if s["fit_unique"] else "every occurrence"
    out = [f"# embedkit sweep: {run_title(record)}", ""]
    out += provenance_lines(record)
    out += [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), hidden {m.get('hidden_size')}; "
        f"dtype {s['dtype']}, device {s['device']}",
        f"- Grid: beta {', '.join(map(_num, s['betas']))}; gamma "
        f"{', '.join(map(_num, s['gammas']))}; k {', '.join(map(str, s['ks']))} "
        f"({t['n_settings']} settings)",
        f"- Fitted on: {s['fit_on']} ({occurrences}); selected on {s['select_on']}, "
        f"reported on {s['report_on']}"
        + ("" if s["honest"] else " (the same split: not an honest estimate)"),
        "- Max length: " + ", ".join(f"{k} {v}" for k, v in s["max_length"].items()),
        *(line for line in (speed_line(record),) if line),
        f"- Timings: sweep {t['seconds_sweep']:.2f} s for {t['n_scored']} task x pooling x "
        f"setting scores (encoding excluded); {t['encoded']} sentences encoded, "
        f"{t['cache_hits']} from the cache; total {t['seconds_total']:.1f} s",
        "", "## Spearman x 100 (cosine similarity): selected on "
        f"{s['select_on']}, reported on {s['report_on']}", "",
        "Per task and pooling: the raw score, the grid's best setting on the selection split, "
        "its scores, and classic whitening (beta = gamma = 1, all dimensions) for comparison.",
        "", format_sweep_table(record, markdown=True), "",
        f"## Hyperparameter table ({s['report_on']}, Spearman x 100)", "",
        "Raw vectors, then whitening at the (beta, gamma) settings of the published table, each "
        "cell listing the scores at every k of the grid.", "",
        headline_table(record), "",
        *sweep_classification_section(record),
    ]
    base = Path(markdown_path).parent if markdown_path else None
    plot_of = {p.name: p for p in (plots or [])}
    for task, by_pool in record["results"].items():
        for pooling, r in by_pool.items():
            out += [f"## {task}, {pooling}", "",
                    f"{s['report_on']} (in parentheses {s['select_on']}); bold: the setting "
                    f"chosen on {s['select_on']}; raw {x100(r['raw']['report'])} "
                    f"({x100(r['raw']['select'])}); d = {r['d']}, fitted on {r['n_fit']} "
                    "vectors", ""]
            if r["skipped_k"]:
                out += [f"k > d skipped: {', '.join(map(str, r['skipped_k']))}", ""]
            out += [_grid_table(r, s["report_on"], s["select_on"]), ""]
            p = plot_of.get(_plot_name(task, pooling))
            if p is not None:
                rel = os.path.relpath(p, base) if base is not None else str(p)
                out += [f"![{task} {pooling}]({rel})", ""]
    out += ["## Data", "", "| task | split | pairs | sha256 |", "|---|---|---:|---|"]
    for task, splits in record["data"].items():
        for split, d in splits.items():
            if split == "fit":
                out.append(f"| {task} | fit: {d['on']} | {d['n_sentences']} sentences | "
                           f"`{d['sha256'][:16]}` |")
            else:
                out.append(f"| {task} | {split} | {d['n_pairs']} | `{d['sha256'][:16]}` |")
    return "\n".join(out) + "\n"
