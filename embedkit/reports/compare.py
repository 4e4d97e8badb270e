"""What :mod:`embedkit.runs.compare` found, drawn: the leaderboard as text or Markdown
(:func:`comparison_table`, :func:`markdown_report`), one self-contained HTML page
(:func:`html_report`: sortable tables, inline SVG bar charts, the records' own plots inlined
as PNG) and a PNG heatmap (:func:`save_plot`, matplotlib).

Every table ranks only the entries with a comparable score on every task; a flagged cell
(``*``) is shown and explained, never ranked, averaged or highlighted with the comparable
ones. Text from the inputs is escaped (:func:`~embedkit.io.tables.escape_markdown`,
:func:`~embedkit.io.tables.escape_html`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embedkit.aliases import StrPath
from embedkit.io.tables import escape_html, escape_markdown, text_table
from embedkit.reports._format import pyplot, x100
from embedkit.reports.bench import run_description
from embedkit.reports.compare_speed import measured_rate, speed_notes, speed_texts, speed_tip
from embedkit.runs.compare import Cell, Comparison, Entry, short_data

# -- text and Markdown ---------------------------------------------------------------------------

def _cell_text(cell: Cell | None) -> str:
    """A cell as tables show it: x 100, two decimals, ``*`` when flagged, ``-`` when none."""
    if cell is None:
        return "-"
    return x100(cell.score) + ("*" if cell.flags else "")


def _avg_text(cmp: Comparison, e: Entry) -> str:
    """The average as tables show it: ``*`` when over flagged cells only, ``(n/N)`` when over
    fewer tasks than the comparison has (never ranked)."""
    avg = cmp.average_of(e)
    text = x100(avg.value) + ("*" if avg.flagged else "")
    if avg.tasks and not avg.complete:
        text += f" ({len(avg.tasks)}/{avg.of})"
    return text


def _protocols(e: Entry) -> str:
    return "/".join(dict.fromkeys(
        c.protocol + ("" if c.evaluator == "embedkit" else f" ({c.evaluator})")
        for c in e.cells.values()))


def run_text(settings: Mapping[str, Any]) -> str:
    """How a cell's encoder ran (:func:`~embedkit.reports.bench.run_description`); only
    the revision for a cell that does not say (mteb's own results), "" for none.

    >>> run_text({"backend": "onnx", "quantize": "int8"}), run_text({"revision": "ab"})
    ('onnx int8', 'revision ab')
    """
    if "backend" in settings:
        return run_description(settings)
    return f"revision {settings['revision']}" if settings.get("revision") else ""


def _settings_text(e: Entry) -> str:
    """How the entry ran (backend, precision, prompt, revision), then the settings its cells
    share, ``k=v`` joined; per-task values as ``a|b``."""
    parts = list(dict.fromkeys(t for c in e.cells.values() if (t := run_text(c.settings))))
    parts = ["|".join(parts)] if parts else []
    for k in ("max_length", "fit_on"):
        vals = list(dict.fromkeys(str(c.settings[k]) for c in e.cells.values()
                                  if c.settings.get(k) is not None))
        if vals:
            parts.append(f"{k}={'|'.join(vals)}")
    return ", ".join(parts)


def board_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the leaderboard (entries by rank); a ``sentences/s`` column after
    ``avg`` when any record measured its encoding speed
    (:func:`~embedkit.reports.compare_speed.speed_texts`)."""
    ranks = cmp.ranks()
    speed = speed_texts(cmp)
    rate_col = ["sentences/s"] if speed is not None else []
    header = ["rank", "model", *cmp.tasks, "avg", *rate_col, "protocol", "settings"]
    rows = [[str(ranks.get(e.label, "-")), e.label,
             *(_cell_text(e.cells.get(t)) for t in cmp.tasks), _avg_text(cmp, e),
             *([speed[e.label]] if speed is not None else []),
             _protocols(e), _settings_text(e)] for e in cmp.ordered()]
    return header, rows


def _flag_notes(cmp: Comparison) -> list[str]:
    """One line per flagged cell: which and why."""
    return [f"{label} / {task}: {reason}" for label, task, reason in cmp.flagged_cells()]


def _skipped_notes(cmp: Comparison) -> list[str]:
    """One line per input left out: which and why."""
    return [f"{path}: {why}" for path, why in cmp.skipped]


def comparison_table(cmp: Comparison, *, markdown: bool = False) -> str:
    """The leaderboard (``metric`` x 100 on ``split``), the flags and the inputs left out
    below it."""
    header, rows = board_rows(cmp)
    out = [text_table(header, rows, markdown=markdown, left=2)]
    item = (lambda n: "- " + escape_markdown(n)) if markdown else (lambda n: "  " + n)
    notes = _flag_notes(cmp)
    if notes:
        out += ["", "* not comparable with the rest of its column (shown, never ranked or "
                    "averaged with it):"]
        out += [item(n) for n in notes]
    if cmp.skipped:
        out += ["", "Left out (no score to compare):"] + [item(n) for n in _skipped_notes(cmp)]
    speed = speed_notes(cmp)
    if speed:
        out += [""] + [item(n) for n in speed]
    return "\n".join(out)


def _provenance_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Every cell with what produced it."""
    header = ["model", "task", cmp.metric, "protocol", "evaluator", "settings", "data", "source"]
    rows = []
    for e in cmp.ordered():
        for t in cmp.tasks:
            c = e.cells.get(t)
            if c is None:
                continue
            cfg = ", ".join(f"{k}={v}" for k, v in c.settings.items()
                            if k not in ("dataset_revision", "mteb_version"))
            rows.append([e.label, t, _cell_text(c), c.protocol, c.evaluator, cfg,
                         short_data(c.data), c.source])
    return header, rows


def agreement_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """The same configuration (base model, pooling, postprocessor, max length, data, and how
    the encoder ran where both cells say: :func:`_same_run`) scored by two evaluators
    (embedkit and mteb): both scores and their difference, per task."""
    groups: dict[tuple, dict[str, list[Cell]]] = {}
    for e in cmp.entries:
        for t, c in e.cells.items():
            key = (e.model, c.settings.get("pooling"), c.settings.get("post"),
                   c.settings.get("fit_on"), c.settings.get("max_length"), t, c.key)
            groups.setdefault(key, {}).setdefault(c.evaluator, []).append(c)
    header = ["configuration", "task", "embedkit", "mteb", "mteb - embedkit"]
    rows = []
    for (model, pooling, post, _, max_len, task, _), by in groups.items():
        pair = next(((a, b) for a in by.get("embedkit", ()) for b in by.get("mteb", ())
                     if _same_run(a, b)), None)
        if pair is not None:
            a, b = pair[0].score, pair[1].score
            name = f"{model} · {pooling}{' + ' + post if post else ''} (max_length {max_len})"
            rows.append([name, task, f"{100 * a:.4f}", f"{100 * b:.4f}", f"{100 * (b - a):+.4f}"])
    return header, rows


def _same_run(a: Cell, b: Cell) -> bool:
    """Whether two cells' encoders ran alike, as far as both say (mteb's own result files name
    no backend): an int8 run is never paired with a float32 one."""
    if "backend" not in a.settings or "backend" not in b.settings:
        return True
    return run_text(a.settings) == run_text(b.settings)


def markdown_report(cmp: Comparison, title: str = "Model comparison") -> str:
    """A Markdown page: the leaderboard, the flags, the inputs left out and every cell's
    provenance (every text from the inputs escaped)."""
    header, rows = _provenance_rows(cmp)
    return "\n".join([
        f"# {escape_markdown(title)}", "",
        f"{cmp.metric.capitalize()} x 100 of cosine similarity on the {cmp.split} split. "
        "`avg` is the mean over an entry's comparable cells; `(n/N)`: over n of the N tasks, "
        "not ranked. `*`: computed under another protocol or on other data than the rest of "
        "its column: shown, never ranked or averaged with the comparable cells. `settings` "
        "says how each encoder ran (backend, precision, prompt, revision).",
        "", comparison_table(cmp, markdown=True), "", *_agreement_md(cmp),
        "## Where each number comes from", "",
        text_table(header, rows, markdown=True, left=2), ""])


def _agreement_md(cmp: Comparison) -> list[str]:
    header, rows = agreement_rows(cmp)
    if not rows:
        return []
    return ["## Same configuration, two evaluators", "",
            "embedkit's STS scoring and mteb's own evaluator (through "
            "`embedkit.integrations.mteb`) on the same local files: x 100, four decimals. mteb "
            "takes cosine in float32, embedkit in float64: near-equal cosines may rank apart "
            "in one and tie in the other, and files keep 6 decimals.", "",
            text_table(header, rows, markdown=True, left=2), ""]


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;
margin:8px 0 24px}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px;max-width:28em;
overflow-wrap:anywhere}th{background:#eee;cursor:pointer;user-select:none}
td.num{text-align:right;white-space:nowrap}td.flag{background:#ffe0b3}
td.best{background:#cfe8cf;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #ddd;padding:6px}img{max-width:420px;margin:4px}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}"""

#: a click on a header sorts its table by that column: the first click best first (the
#: header's data-best, "desc" for scores, "asc" for ranks and text), the next one reverses.
#: In a number column (data-num) comparable values come first, then the ones shown but not
#: comparable (data-g: flagged, or an average over fewer tasks), then the missing ones,
#: whichever the direction.
_JS = """document.querySelectorAll("table.sortable th").forEach(function(th,i){
th.addEventListener("click",function(){var t=th.closest("table"),b=t.tBodies[0],
dir=th.classList.contains("desc")?"asc":th.classList.contains("asc")?"desc":
(th.getAttribute("data-best")||"asc"),s=dir==="asc"?1:-1,num=th.hasAttribute("data-num");
t.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc")});
th.classList.add(dir);var rows=Array.prototype.slice.call(b.rows);
function g(td){return !num?0:!td.hasAttribute("data-v")?2:td.hasAttribute("data-g")?1:0}
rows.sort(function(x,y){var a=x.cells[i],c=y.cells[i],d=g(a)-g(c);if(d)return d;
if(num&&a.hasAttribute("data-v")&&c.hasAttribute("data-v"))return s*(
parseFloat(a.getAttribute("data-v"))-parseFloat(c.getAttribute("data-v")));
return s*a.textContent.localeCompare(c.textContent)});
rows.forEach(function(r){b.appendChild(r)})})});"""


def _th(text: str, numeric: bool, best_first: str) -> str:
    attrs = f' data-best="{best_first}"' + (" data-num" if numeric else "")
    return f"<th{attrs}>{escape_html(text)}</th>"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, table_id: str,
                values: Sequence[Sequence[float | None]] | None = None,
                tips: Sequence[Sequence[str]] | None = None,
                classes: Sequence[Sequence[str]] | None = None,
                best_first: Mapping[int, str] | None = None) -> str:
    """A sortable table. ``values``: the numbers a column sorts on (a column with any is a
    number column, sorted best first: ``best_first[column]``, default "desc"); ``tips``: a
    tooltip per cell; ``classes``: extra classes per cell (``flag``, ``unranked``: shown but
    not comparable; ``best``: highlighted)."""
    numeric = [any(r[c] is not None for r in values or ()) for c in range(len(header))]
    best_first = best_first or {}
    head = "".join(_th(h, numeric[c], best_first.get(c, "desc" if numeric[c] else "asc"))
                   for c, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        tds = []
        for c, text in enumerate(row):
            v = values[r][c] if values else None
            extra = classes[r][c] if classes else ""
            cls = " ".join(x for x in ("num" if numeric[c] else "", extra) if x)
            attrs = f' class="{cls}"' if cls else ""
            attrs += f' data-v="{v:.6f}"' if v is not None and math.isfinite(v) else ""
            attrs += ' data-g="1"' if {"flag", "unranked"} & set(extra.split()) else ""
            tip = tips[r][c] if tips else ""
            attrs += f' title="{escape_html(tip)}"' if tip else ""
            tds.append(f"<td{attrs}>{escape_html(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _best(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) if finite else None


def _board_html(cmp: Comparison) -> str:
    """The leaderboard: numbers sort on their values, flagged cells marked and explained in
    their tooltip, the best comparable value of each score column highlighted."""
    header, rows = board_rows(cmp)
    ranks = cmp.ranks()
    entries = cmp.ordered()
    speed = len(header) > len(cmp.tasks) + 5  # the sentences/s column (board_rows)
    values, tips, classes = [], [], []
    for e in entries:
        cells = [e.cells.get(t) for t in cmp.tasks]
        ranked = e.label in ranks
        values.append([float(ranks[e.label]) if ranked else None, None,
                       *(100 * c.score if c else None for c in cells),
                       100 * cmp.average(e), *([measured_rate(e)] if speed else []), None, None])
        tips.append(["", e.source, *(_cell_tip(c) for c in cells), _avg_tip(cmp, e),
                     *([speed_tip(e)] if speed else []),
                     "", ""])
        classes.append(["", "", *("flag" if c and c.flags else "" for c in cells),
                        "" if ranked else "unranked", *([""] if speed else []), "", ""])
    for col in range(2, 3 + len(cmp.tasks)):  # tasks and avg: the best comparable value
        top = _best([v[col] for v, k in zip(values, classes, strict=True) if not k[col]])
        for v, k in zip(values, classes, strict=True):
            if top is not None and not k[col] and v[col] == top:
                k[col] = "best"
    return _html_table(header, rows, table_id="board", values=values, tips=tips,
                       classes=classes, best_first={0: "asc"})


def _cell_tip(c: Cell | None) -> str:
    if c is None:
        return ""
    cfg = ", ".join(f"{k}={v}" for k, v in c.settings.items())
    return "; ".join([f"{c.protocol} ({c.evaluator})", cfg, f"data {short_data(c.data)}",
                      *c.flags, c.source])


def _avg_tip(cmp: Comparison, e: Entry) -> str:
    avg = cmp.average_of(e)
    if cmp.rankable(e):
        return f"mean over all {avg.of} tasks"
    why = "flagged cells only" if avg.flagged else f"{len(avg.tasks)} of {avg.of} tasks"
    return f"mean over {why}: not ranked"


def _axis_range(values: Sequence[float]) -> tuple[float, float]:
    """Where a bar chart's axis starts and ends: the largest value, and a round number a
    quarter of the values' spread below the smallest (so that bars of 70 to 80 differ
    visibly), never below 0 when no value is.

    >>> _axis_range([70.0, 80.0]), _axis_range([-10.0, 30.0]), _axis_range([0.5, 3.0])
    ((65.0, 80.0), (-20.0, 30.0), (0.0, 3.0))
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    spread = hi - lo or max(abs(hi) * 0.1, 1.0)
    raw = spread / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor((lo - spread / 4) / step) * step
    if lo >= 0 > start:
        start = 0.0
    return float(start), float(hi)


def _wrapped(label: str, width: int = 34, lines: int = 4) -> list[str]:
    """A label's lines (at most ``lines``, the last one cut with "…")."""
    out = textwrap.wrap(label, width, break_long_words=True) or [""]
    if len(out) > lines:
        out = [*out[:lines - 1], out[lines - 1][:width - 1] + "…"]
    return out


def bar_chart_svg(title: str, bars: Sequence[tuple[str, float, bool]], *,
                  width: int = 460) -> str:
    """A horizontal bar chart as inline SVG: ``(label, value x 100, flagged)`` per bar, flagged
    bars in orange; long labels wrap; the axis (:func:`_axis_range`, its ends written below the
    bars and in ``data-axis-min`` / ``data-axis-max``) starts near the data.

    >>> svg = bar_chart_svg("T", [("a", 50.0, False), ("b", 25.0, True)])
    >>> svg.startswith("<svg") and "a" in svg and "#e69500" in svg
    True
    """
    label_w, top, line_h = 220, 22, 13
    lo, hi = _axis_range([v for _, v, _ in bars])
    base = 0.0 if lo <= 0.0 <= hi else lo
    scale = (width - label_w - 50) / ((hi - lo) or 1.0)
    x = lambda v: label_w + (v - lo) * scale  # noqa: E731
    parts, y = [], top
    for label, v, flagged in bars:
        lines = _wrapped(label)
        row = max(18, line_h * len(lines) + 5)
        spans = "".join(f'<tspan x="{label_w - 4}" dy="{0 if i == 0 else line_h}">'
                        f"{escape_html(t)}</tspan>" for i, t in enumerate(lines))
        parts.append(f'<text y="{y + 12}" font-size="11" text-anchor="end"><title>'
                     f"{escape_html(label)}</title>{spans}</text>")
        if math.isfinite(v):
            color = "#e69500" if flagged else "#4c78a8"
            parts.append(f'<rect x="{x(min(v, base)):.1f}" y="{y + 2}" '
                         f'width="{abs(v - base) * scale:.1f}" height="13" fill="{color}"/>')
            parts.append(f'<text x="{x(max(v, base)) + 3:.1f}" y="{y + 12}" font-size="11">'
                         f'{v:.2f}{"*" if flagged else ""}</text>')
        y += row
    axis = (f'<line x1="{x(base):.1f}" y1="{top}" x2="{x(base):.1f}" y2="{y}" stroke="#999"/>'
            f'<text x="{x(lo):.1f}" y="{y + 12}" font-size="10" fill="#666" '
            f'text-anchor="middle">{lo:g}</text><text x="{x(hi):.1f}" y="{y + 12}" '
            f'font-size="10" fill="#666" text-anchor="middle">{hi:.2f}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 18}" '
            f'role="img" data-axis-min="{lo:g}" data-axis-max="{hi:g}"><text x="4" y="15" '
            f'font-size="13" font-weight="bold">{escape_html(title)}</text>'
            + "".join(parts) + axis + "</svg>")


def _task_charts(cmp: Comparison) -> str:
    """The ranked entries' averages, then each task's scores (flagged ones in orange)."""
    charts = []
    for t in cmp.tasks:
        bars = sorted(((e.label, 100 * e.cells[t].score, bool(e.cells[t].flags))
                       for e in cmp.entries if t in e.cells), key=lambda b: -b[1])
        charts.append(f'<div class="chart">{bar_chart_svg(t, bars)}</div>')
    avg = sorted(((e.label, 100 * cmp.average(e), False) for e in cmp.entries
                  if cmp.rankable(e)), key=lambda b: -b[1])
    if avg:
        charts.insert(0, f'<div class="chart">{bar_chart_svg("average (ranked)", avg)}</div>')
    return '<div class="charts">' + "".join(charts) + "</div>"


def _inline_png(path: Path) -> str:
    import base64

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<img alt="{escape_html(path.name)}" title="{escape_html(path)}" '
            f'src="data:image/png;base64,{data}">')


def _record_plots(cmp: Comparison, limit: int = 40) -> str:
    """The PNG plots the records list (sweep, diagnostics), inlined; paths are tried as given,
    then beside the record and one folder up."""
    imgs: list[str] = []
    for e in cmp.entries:
        for p in e.plots:
            base = Path(e.source).parent
            found = next((c for c in (Path(p), base / p, base.parent / p, base / Path(p).name)
                          if c.is_file() and c.suffix.lower() == ".png"), None)
            if found is not None and len(imgs) < limit:
                imgs.append(_inline_png(found))
    return "".join(imgs)


def _notes_html(title: str, notes: Sequence[str]) -> str:
    items = "".join(f"<li>{escape_html(n)}</li>" for n in notes)
    return f"<h2>{escape_html(title)}</h2><ul>{items}</ul>" if notes else ""


def html_report(cmp: Comparison, title: str = "Model comparison") -> str:
    """One self-contained HTML page (no network): the sortable leaderboard (hover a cell for
    its provenance), per-task inline SVG bar charts, the flags, the inputs left out, every
    cell's provenance, and the records' own plots inlined as PNG."""
    header, rows = _provenance_rows(cmp)
    plots = _record_plots(cmp)
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape_html(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape_html(title)}</h1><p>{escape_html(cmp.metric.capitalize())} x 100 of "
        f"cosine similarity on the {escape_html(cmp.split)} split. Click a column header to "
        "sort it, best first (again: reversed); hover a cell for the protocol, settings, data "
        "and file behind it. <b>*</b> (orange): computed under another protocol or on other "
        "data than the rest of its column: shown, never ranked, averaged or highlighted with "
        "it. Only entries with a comparable score on every task are ranked; green: the best "
        "comparable value of a column.</p>",
        "<h2>Leaderboard</h2>", _board_html(cmp),
        _notes_html("Not comparable", _flag_notes(cmp)),
        _notes_html("Left out (no score to compare)", _skipped_notes(cmp)),
        _notes_html("Encoding speed", speed_notes(cmp)),
        "<h2>Per task</h2>", _task_charts(cmp), _agreement_html(cmp),
        "<h2>Where each number comes from</h2>",
        _html_table(header, rows, table_id="provenance"),
        f"<h2>Plots from the records</h2>{plots}" if plots else "",
        f"<script>{_JS}</script></body></html>"])


def _agreement_html(cmp: Comparison) -> str:
    header, rows = agreement_rows(cmp)
    if not rows:
        return ""
    return ("<h2>Same configuration, two evaluators</h2><p>embedkit's scoring and mteb's own "
            "evaluator on the same local files (x 100); mteb takes cosine in float32, embedkit "
            "in float64.</p>" + _html_table(header, rows, table_id="agreement"))


# -- PNG ----------------------------------------------------------------------------------------

def save_plot(cmp: Comparison, path: StrPath) -> Path:
    """A PNG heatmap of entries x (tasks, avg), values annotated, flagged cells marked ``*``;
    the average only for ranked entries (needs matplotlib)."""
    plt = pyplot("plot")
    import numpy as np

    entries = cmp.ordered()
    cols = [*cmp.tasks, "avg"]
    grid = np.array([[100 * e.cells[t].score if t in e.cells else np.nan for t in cmp.tasks]
                     + [100 * cmp.average(e) if cmp.rankable(e) else np.nan]
                     for e in entries], dtype=float)
    fig, ax = plt.subplots(figsize=(2 + 1.1 * len(cols), 1 + 0.38 * len(entries)))
    ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(entries)), [e.label for e in entries], fontsize=8)
    for i, e in enumerate(entries):
        for j, t in enumerate(cols):
            flagged = t in e.cells and bool(e.cells[t].flags)
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}{'*' if flagged else ''}", ha="center",
                        va="center", fontsize=8, color="white" if grid[i, j] < np.nanmean(
                            grid) else "black")
    ax.set_title(f"{cmp.metric} x 100, {cmp.split} split (* not comparable)")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
