"""Many models side by side: embedkit records and mteb result folders, one models x tasks table.

:func:`compare` reads ``embedkit bench`` records (one entry per row), ``embedkit sweep``
records (per pooling: raw, classic whitening, the valid-selected whitening) and mteb result
folders (written by ``mteb.evaluate`` or by
:func:`~embedkit.experiments.mteb_results.write_mteb_results`; one entry per model, revision
and experiment). Every cell keeps the protocol, settings, data checksum and file that
produced it. A cell is **flagged** when its protocol or its data differ from the column's
reference (the most common protocol and data of that task): such scores are shown, marked,
and explained, never silently averaged as if comparable. ``cmteb`` (embedkit's C-MTEB protocol)
and ``mteb`` (scored by mteb's evaluator) count as one protocol; their data must still match.

Renderers: :func:`comparison_table` (text or Markdown), :func:`markdown_report`,
:func:`html_report` (one self-contained page: sortable table, inline SVG bar charts, the
records' own plots inlined as PNG) and :func:`save_plot` (a PNG heatmap, matplotlib).

>>> rec = {"kind": "bench", "model": {"name": "m"}, "settings": {"protocol": "cmteb",
...        "max_length": {"T": 512}}, "data": {"T": {"test": {"sha256": "ab"}}},
...        "results": {"cls": {"T": {"test": {"spearman": 0.5}}, "pooling": "cls"}}}
>>> other = {**rec, "settings": {"protocol": "whitening", "max_length": {"T": 64}}}
>>> cmp = compare_records([("a.json", rec), ("b.json", rec), ("c.json", other)])
>>> [e.label for e in cmp.entries], cmp.flagged_cells()
(['m · cls', 'm · cls [b.json]', 'm · cls [c.json]'], [('m · cls [c.json]', 'T', 'protocol whitening (column: cmteb)')])
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedkit.errors import ConfigError, MissingFileError
from embedkit.experiments.mteb_results import (
    CMTEB_TASKS,
    base_model_name,
    mteb_model_name,
    official_task_name,
    read_run_settings,
)

METRICS = ("spearman", "pearson")
#: protocols that compute the same thing (C-MTEB's splits and max length)
PROTOCOL_FAMILY = {"mteb": "cmteb"}
_FROM_MTEB = {name: task for task, (name, _) in CMTEB_TASKS.items()}
_SPLITS = {"validation": "valid", "dev": "valid"}


@dataclass
class Cell:
    """One score with what produced it."""

    score: float
    protocol: str
    data: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    evaluator: str = "embedkit"
    source: str = ""
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str | None]:
        """What must match for two cells to be comparable: protocol family and data."""
        return PROTOCOL_FAMILY.get(self.protocol, self.protocol), self.data


@dataclass
class Entry:
    """One model configuration (a row of the table): its cells by task."""

    label: str
    source: str
    kind: str
    cells: dict[str, Cell] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    model: str = ""  # the base model as mteb names it (moka-ai/m3e-small)


@dataclass
class Comparison:
    """Entries x tasks for one metric and split, with flags set (:func:`flag_cells`)."""

    metric: str
    split: str
    tasks: list[str]
    entries: list[Entry]
    reference: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def average(self, entry: Entry) -> float:
        """Mean over the tasks the entry has (NaN scores make it NaN)."""
        vals = [entry.cells[t].score for t in self.tasks if t in entry.cells]
        return sum(vals) / len(vals) if vals else math.nan

    def complete(self, entry: Entry) -> bool:
        return all(t in entry.cells for t in self.tasks)

    def ranks(self) -> dict[str, int]:
        """Rank by average among entries with every task (1 = best)."""
        scored = [(self.average(e), e.label) for e in self.entries
                  if self.complete(e) and not math.isnan(self.average(e))]
        return {label: i + 1 for i, (_, label) in enumerate(sorted(scored, key=lambda x: -x[0]))}

    def ordered(self) -> list[Entry]:
        """Entries by rank, then the incomplete ones in input order."""
        ranks = self.ranks()
        return sorted(self.entries, key=lambda e: ranks.get(e.label, len(self.entries) + 1))

    def flagged_cells(self) -> list[tuple[str, str, str]]:
        """``(entry, task, reason)`` for every flagged cell."""
        return [(e.label, t, f) for e in self.entries for t, c in e.cells.items()
                for f in c.flags]


# -- reading ------------------------------------------------------------------------------------

def canonical_task(name: str) -> str:
    """embedkit's task name for a C-MTEB one (``STSB`` -> ``STS-B``), local data's included
    (``STSB-local-1a2b3c4d`` -> ``STS-B``: the cell's data checksum tells them apart).

    >>> canonical_task("STSB"), canonical_task("ATEC"), canonical_task("mine-local-0123abcd")
    ('STS-B', 'ATEC', 'mine')
    """
    name = official_task_name(name)
    return _FROM_MTEB.get(name, name)


def canonical_split(split: str) -> str:
    """``validation`` / ``dev`` -> ``valid``; other names unchanged."""
    return _SPLITS.get(split, split)


def _bench_entries(path: str, rec: Mapping[str, Any], metric: str, split: str) -> list[Entry]:
    settings = rec.get("settings") or {}
    model = (rec.get("model") or {}).get("name", "?")
    protocol = str(settings.get("protocol") or "unknown")
    lengths = settings.get("max_length") or {}
    out = []
    base = mteb_model_name(rec.get("model") or {})[0]
    for label, row in (rec.get("results") or {}).items():
        entry = Entry(f"{model} · {label}", path, "bench", model=base)
        for task, by_split in row.items():
            if not isinstance(by_split, Mapping) or split not in by_split:
                continue
            s = by_split[split]
            data = ((rec.get("data") or {}).get(task) or {}).get(split) or {}
            cfg = {"split": split, "max_length": lengths.get(task) if isinstance(
                lengths, Mapping) else lengths, "pooling": row.get("pooling")}
            if row.get("post"):
                cfg.update(post=row["post"], fit_on=settings.get("fit_on"))
            entry.cells[task] = Cell(float(s[metric]), protocol, data.get("sha256"), cfg,
                                     "embedkit", path)
        out.append(entry)
    return out


def _sweep_entries(path: str, rec: Mapping[str, Any], metric: str, split: str) -> list[Entry]:
    settings = rec.get("settings") or {}
    if metric != "spearman":
        return []  # a sweep records Spearman only
    which = {settings.get("report_on", "test"): "report", settings.get("select_on", "valid"):
             "select"}.get(split)
    if which is None:
        return []
    model = (rec.get("model") or {}).get("name", "?")
    protocol = str(settings.get("protocol") or "unknown")
    lengths = settings.get("max_length") or {}
    entries: dict[str, Entry] = {}
    kinds = {"raw": "", "classic": " + whiten (classic)",
             "best": f" + whiten (best on {settings.get('select_on', 'valid')})"}
    for task, by_pool in (rec.get("results") or {}).items():
        data = ((rec.get("data") or {}).get(task) or {}).get(split) or {}
        for pooling, res in by_pool.items():
            for kind, suffix in kinds.items():
                if not isinstance(res.get(kind), Mapping) or which not in res[kind]:
                    continue
                label = f"{model} · {pooling}{suffix}"
                entry = entries.setdefault(label, Entry(
                    label, path, "sweep", model=mteb_model_name(rec.get("model") or {})[0]))
                cfg = {"split": split, "max_length": lengths.get(task), "pooling": pooling,
                       "post": res[kind].get("post"),
                       "fit_on": settings.get("fit_on") if kind != "raw" else None}
                entry.cells[task] = Cell(float(res[kind][which]), protocol, data.get("sha256"),
                                         {k: v for k, v in cfg.items() if v is not None},
                                         "embedkit", path)
    return list(entries.values())


#: the SimCSE report's whitening rows when its record does not name them (records before
#: ``settings.whiten``)
SIMCSE_WHITEN = ("whiten:beta=1,gamma=1,k=all", "whiten:beta=1,gamma=1,k=256")


def is_simcse_report(rec: Mapping[str, Any]) -> bool:
    """A SimCSE report's record: kind ``simcse-report``, or (records written before it had a
    kind) no kind and an ``unsupervised`` list.

    >>> is_simcse_report({"kind": "simcse-report"}), is_simcse_report({"unsupervised": []})
    (True, True)
    """
    return rec.get("kind") == "simcse-report" or (
        rec.get("kind") is None and isinstance(rec.get("unsupervised"), list))


def _simcse_entries(path: str, rec: Mapping[str, Any], metric: str, split: str) -> list[Entry]:
    """A SimCSE report (Spearman on the test split, whitening protocol): per unsupervised row
    the base model raw, whitened (two chains, fitted on the task) and after SimCSE on the task;
    each supervised run on its task. The report keeps no checksum of the test files: its cells'
    data is unknown, so they are flagged against a column that has one."""
    if metric != "spearman" or split != "test":
        return []  # the report scores Spearman on test only
    settings = rec.get("settings") or {}
    model = (rec.get("model") or {}).get("name", "?")
    base = mteb_model_name(rec.get("model") or {})[0]
    pooling = str(settings.get("pooling") or rec.get("pooling") or "?")
    whiten = tuple(settings.get("whiten") or SIMCSE_WHITEN)
    entries: dict[str, Entry] = {}

    def add(label: str, task: str, score: Any, **cfg: Any) -> None:
        if not isinstance(score, (int, float)):
            return
        entry = entries.setdefault(label, Entry(label, path, "simcse", model=base))
        cfg = {"split": split, "pooling": pooling, **{k: v for k, v in cfg.items() if v}}
        entry.cells[task] = Cell(float(score), "whitening", None, cfg, "embedkit", path)

    for r in rec.get("unsupervised") or ():
        task = str(r.get("task"))
        add(f"{model} · {pooling}", task, r.get("raw"))
        for key, chain in zip(("whiten", "whiten256"), whiten, strict=False):
            add(f"{model} · {pooling} + {chain}", task, r.get(key), post=chain, fit_on="task")
        add(f"{model} · {pooling} + SimCSE (unsupervised, on the task)", task, r.get("simcse"),
            trained=r.get("out_dir"))
    for r in rec.get("supervised") or ():
        task = str(r.get("task"))
        add(f"{model} · {pooling} + SimCSE {r.get('run')} ({task} train)", task,
            r.get("simcse"), trained=r.get("out_dir"))
    return list(entries.values())


def record_entries(path: str, rec: Mapping[str, Any], metric: str = "spearman",
                   split: str = "test") -> list[Entry]:
    """The entries of an embedkit record (bench: one per row; sweep: raw, classic and best
    whitening per pooling; SimCSE report: see :func:`_simcse_entries`); other kinds are a
    :class:`ConfigError`."""
    kind = rec.get("kind") if isinstance(rec, Mapping) else None
    if kind == "bench":
        entries = _bench_entries(path, rec, metric, split)
    elif kind == "bench-models":  # several models in one bench: each model's rows
        entries = [e for block in rec.get("models") or ()
                   for e in _bench_entries(path, block, metric, split)]
    elif kind == "sweep":
        entries = _sweep_entries(path, rec, metric, split)
    elif isinstance(rec, Mapping) and is_simcse_report(rec):
        entries = _simcse_entries(path, rec, metric, split)
    else:
        raise ConfigError(f"{path}: a {kind or 'JSON'} record; compare reads bench, sweep and "
                          "SimCSE report records and mteb result folders", param="inputs")
    plots = [p for p in rec.get("plots") or () if isinstance(p, str)]
    if entries:
        entries[0].plots = plots
    return entries


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable JSON ({e})", param="inputs") from None


def _experiment_label(kwargs: Mapping[str, Any] | None) -> str:
    if not kwargs:
        return ""
    kw = dict(kwargs)
    parts = [str(kw.pop("pooling"))] if "pooling" in kw else []
    if kw.get("post"):
        parts.append(f"+ {kw.pop('post')}")
    kw.pop("post_sha256", None)
    parts += [f"{k}={v}" for k, v in sorted(kw.items()) if k != "max_length"]
    return " ".join(parts)


def _mteb_cell(result: Mapping[str, Any], metric: str, split: str, meta: Mapping[str, Any],
               run: Mapping[str, Any] | None, path: Path) -> Cell | None:
    """The cell of one TaskResult file, or None if it lacks the split."""
    mteb_split = {"valid": "validation"}.get(split, split)
    entries = (result.get("scores") or {}).get(mteb_split) or (result.get("scores") or {}
                                                                ).get(split)
    if not entries:
        return None
    scores = next((e for e in entries if e.get("hf_subset") == "default"), entries[0])
    value = scores.get(f"cosine_{metric}", scores.get(metric))
    if value is None:
        return None
    ek = (run or {}).get("embedkit") or {}
    kwargs = meta.get("experiment_kwargs") or meta.get("loader_kwargs") or {}
    data = (ek.get("data") or {}).get(split, {}).get("sha256") if ek else None
    cfg = {"split": split, "max_length": kwargs.get("max_length", meta.get("max_tokens")),
           "pooling": kwargs.get("pooling"), "post": kwargs.get("post"),
           "fit_on": kwargs.get("fit_on"), "dataset_revision": result.get("dataset_revision"),
           "mteb_version": result.get("mteb_version")}
    evaluator = "embedkit" if ek.get("kind") == "bench" else "mteb"
    revision = str(result.get("dataset_revision"))
    if not data:  # a local revision carries the data's checksum; C-MTEB's names the hub's data
        data = (revision.removeprefix("local-sha256-") if revision.startswith("local-sha256-")
                else f"hub:{revision}")
    return Cell(float(value), str(ek.get("protocol") or "mteb"), data,
                {k: v for k, v in cfg.items() if v is not None}, evaluator, str(path))


def read_mteb_folder(root: str | os.PathLike, metric: str = "spearman",
                     split: str = "test") -> list[Entry]:
    """Entries from an mteb results folder (``<model>/<revision>/[experiments/<x>/]<Task>.json``
    beside ``model_meta.json``; ``root`` may also be a cache folder holding ``results/``)."""
    root = Path(root)
    if (root / "results").is_dir():
        root = root / "results"
    entries: dict[Path, Entry] = {}
    for path in sorted(root.rglob("*.json")):
        if path.name == "model_meta.json" or not (path.parent / "model_meta.json").is_file():
            continue
        result = _load_json(path)
        if not isinstance(result, dict) or "task_name" not in result:
            continue
        meta = _load_json(path.parent / "model_meta.json")
        runs = read_run_settings(path.parent)
        cell = _mteb_cell(result, metric, split, meta, runs.get(result["task_name"]), path)
        if cell is None:
            continue
        if path.parent not in entries:
            exp = _experiment_label(meta.get("experiment_kwargs"))
            label = f"{meta.get('name', '?')}{' · ' + exp if exp else ''} [{cell.evaluator}]"
            entries[path.parent] = Entry(label, str(path.parent), "mteb",
                                         model=base_model_name(str(meta.get("name", ""))))
        entries[path.parent].cells[canonical_task(str(result["task_name"]))] = cell
    return list(entries.values())


def flag_cells(entries: Sequence[Entry], tasks: Sequence[str]
               ) -> dict[str, tuple[str, str | None]]:
    """Flag every cell whose protocol or data differ from its column's reference (the most
    common ``(protocol, data)``; ties: the first entry's). Returns the references."""
    refs: dict[str, tuple[str, str | None]] = {}
    for task in tasks:
        cells = [e.cells[task] for e in entries if task in e.cells]
        if not cells:
            continue
        counts = Counter(c.key for c in cells)
        best = max(counts.values())
        ref = next(c.key for c in cells if counts[c.key] == best)
        refs[task] = ref
        for c in cells:
            c.flags = []
            if c.key[0] != ref[0]:
                c.flags.append(f"protocol {c.protocol} (column: {ref[0]})")
            if c.key[1] != ref[1]:
                c.flags.append(f"data {_short(c.key[1])} (column: {_short(ref[1])})")
    return refs


def _short(data: str | None) -> str:
    if not data:
        return "unknown"
    return data[:12] if not data.startswith("hub:") else "hub@" + data[4:12]


def _unique_labels(entries: list[Entry]) -> None:
    """A label seen before gets its file's name, then a count, appended."""
    seen: Counter[str] = Counter()
    for e in entries:
        if e.label in seen:
            e.label = f"{e.label} [{Path(e.source).name}]"
        while e.label in seen:
            e.label = f"{e.label} ({seen[e.label] + 1})"
        seen[e.label] += 1


def compare_records(items: Iterable[tuple[str, Mapping[str, Any]]], metric: str = "spearman",
                    split: str = "test", *, extra: Sequence[Entry] = ()) -> Comparison:
    """A :class:`Comparison` of records already read (``(path, record)`` pairs) and entries
    read otherwise (``extra``)."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}",
                          param="metric")
    split = canonical_split(split)
    entries = [e for path, rec in items for e in record_entries(path, rec, metric, split)]
    entries += list(extra)
    entries = [e for e in entries if e.cells]
    _unique_labels(entries)
    tasks = list(dict.fromkeys(t for e in entries for t in e.cells))
    cmp = Comparison(metric, split, tasks, entries)
    cmp.reference = flag_cells(entries, tasks)
    return cmp


def compare(inputs: Sequence[str | os.PathLike], metric: str = "spearman",
            split: str = "test") -> Comparison:
    """Read every input (an embedkit JSON record, or a folder of mteb results) and compare.

    A folder's JSON files that are embedkit records are read as records too."""
    if not inputs:
        raise ConfigError("give at least one record or mteb results folder", param="inputs")
    records: list[tuple[str, Mapping[str, Any]]] = []
    extra: list[Entry] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            extra += read_mteb_folder(path, metric, canonical_split(split))
        elif path.is_file():
            records.append((str(path), _load_json(path)))
        else:
            raise MissingFileError("no such record or folder", path=str(path))
    cmp = compare_records(records, metric, split, extra=extra)
    if not cmp.entries:
        raise ConfigError(f"no {metric} scores on split {cmp.split} in the inputs",
                          param="split")
    return cmp


# -- rendering ----------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    return _fmt(cell.score) + ("*" if cell.flags else "")


def _avg_text(cmp: Comparison, e: Entry) -> str:
    text = _fmt(cmp.average(e))
    if any(c.flags for c in e.cells.values()):
        text += "*"
    if not cmp.complete(e):
        text += f" ({len([t for t in cmp.tasks if t in e.cells])}/{len(cmp.tasks)})"
    return text


def _protocols(e: Entry) -> str:
    return "/".join(dict.fromkeys(
        c.protocol + ("" if c.evaluator == "embedkit" else f" ({c.evaluator})")
        for c in e.cells.values()))


def _settings_text(e: Entry) -> str:
    """The settings the entry's cells share, ``k=v`` joined; per-task values as ``a|b``."""
    keys = ("max_length", "fit_on")
    parts = []
    for k in keys:
        vals = list(dict.fromkeys(str(c.settings[k]) for c in e.cells.values()
                                  if c.settings.get(k) is not None))
        if vals:
            parts.append(f"{k}={'|'.join(vals)}")
    return ", ".join(parts)


def board_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the leaderboard (entries by rank)."""
    ranks = cmp.ranks()
    header = ["rank", "model", *cmp.tasks, "avg", "protocol", "settings"]
    rows = [[str(ranks.get(e.label, "-")), e.label,
             *(_cell_text(e.cells.get(t)) for t in cmp.tasks), _avg_text(cmp, e),
             _protocols(e), _settings_text(e)] for e in cmp.ordered()]
    return header, rows


def flag_notes(cmp: Comparison) -> list[str]:
    """One line per flagged cell: which and why."""
    return [f"{label} / {task}: {reason}" for label, task, reason in cmp.flagged_cells()]


def comparison_table(cmp: Comparison, *, markdown: bool = False) -> str:
    """The leaderboard (``metric`` x 100 on ``split``), the flags below it."""
    from embedkit.io.tables import text_table

    header, rows = board_rows(cmp)
    out = [text_table(header, rows, markdown=markdown, left=2)]
    notes = flag_notes(cmp)
    if notes:
        out += ["", "* not comparable with the rest of its column (never mixed silently):"]
        out += [("- " if markdown else "  ") + n for n in notes]
    return "\n".join(out)


def provenance_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
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
                         _short(c.data), c.source])
    return header, rows


def agreement_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """The same configuration (base model, pooling, postprocessor, max length, data) scored by
    two evaluators (embedkit and mteb): both scores and their difference, per task."""
    groups: dict[tuple, dict[str, tuple[str, Cell]]] = {}
    for e in cmp.entries:
        for t, c in e.cells.items():
            key = (e.model, c.settings.get("pooling"), c.settings.get("post"),
                   c.settings.get("fit_on"), c.settings.get("max_length"), t, c.key)
            groups.setdefault(key, {}).setdefault(c.evaluator, (e.label, c))
    header = ["configuration", "task", "embedkit", "mteb", "mteb - embedkit"]
    rows = []
    for (model, pooling, post, _, max_len, task, _), by in groups.items():
        if {"embedkit", "mteb"} <= set(by):
            a, b = by["embedkit"][1].score, by["mteb"][1].score
            name = f"{model} · {pooling}{' + ' + post if post else ''} (max_length {max_len})"
            rows.append([name, task, f"{100 * a:.4f}", f"{100 * b:.4f}", f"{100 * (b - a):+.4f}"])
    return header, rows


def markdown_report(cmp: Comparison, title: str = "Model comparison") -> str:
    """A Markdown page: the leaderboard, the flags and every cell's provenance."""
    from embedkit.io.tables import text_table

    header, rows = provenance_rows(cmp)
    return "\n".join([
        f"# {title}", "",
        f"{cmp.metric.capitalize()} x 100 of cosine similarity on the {cmp.split} split; "
        "`avg` is the mean over the tasks an entry has (`(n/N)`: incomplete, not ranked). "
        "`*`: computed under another protocol or on other data than the rest of its column.",
        "", comparison_table(cmp, markdown=True), "", *_agreement_md(cmp),
        "## Where each number comes from", "",
        text_table(header, rows, markdown=True, left=2), ""])


def _agreement_md(cmp: Comparison) -> list[str]:
    from embedkit.io.tables import text_table

    header, rows = agreement_rows(cmp)
    if not rows:
        return []
    return ["## Same configuration, two evaluators", "",
            "embedkit's STS scoring and mteb's own evaluator (through "
            "`embedkit.integrations.mteb`) on the same local files: x 100, four decimals. mteb "
            "takes cosine in float32, embedkit in float64: near-equal cosines may rank apart "
            "in one and tie in the other, and files keep 6 decimals.", "",
            text_table(header, rows, markdown=True, left=2), ""]


# -- HTML and plot ------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;
margin:8px 0 24px}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#eee;cursor:pointer;user-select:none}td.num{text-align:right}
td.flag{background:#ffe0b3}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{border:1px solid #ddd;padding:6px}img{max-width:420px;margin:4px}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}"""

#: click a header to sort its table (numbers by value, else text); click again to reverse
_JS = """document.querySelectorAll("table.sortable th").forEach(function(th,i){
th.addEventListener("click",function(){var t=th.closest("table"),b=t.tBodies[0],
asc=!th.classList.contains("asc");t.querySelectorAll("th").forEach(function(h){
h.classList.remove("asc","desc")});th.classList.add(asc?"asc":"desc");
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){
var a=x.cells[i].getAttribute("data-v")||x.cells[i].textContent,
c=y.cells[i].getAttribute("data-v")||y.cells[i].textContent,na=parseFloat(a),nc=parseFloat(c),
k=(isNaN(na)||isNaN(nc))?a.localeCompare(c):na-nc;return asc?k:-k});
rows.forEach(function(r){b.appendChild(r)})})});"""


def escape_html(x: Any) -> str:
    """``x`` as HTML text (quotes escaped too)."""
    import html

    return html.escape(str(x), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, table_id: str,
                values: Sequence[Sequence[float | None]] | None = None,
                flags: Sequence[Sequence[str]] | None = None) -> str:
    """A sortable table; ``values`` give the numbers sorted on, ``flags`` a tooltip that also
    marks the cell."""
    head = "".join(f"<th>{escape_html(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        tds = []
        for c, text in enumerate(row):
            v = values[r][c] if values else None
            tip = flags[r][c] if flags else ""
            cls = ("num" if v is not None else "") + (" flag" if tip and "*" in text else "")
            attrs = f' data-v="{v:.6f}"' if v is not None and not math.isnan(v) else ""
            attrs += f' title="{escape_html(tip)}"' if tip else ""
            tds.append(f'<td class="{cls.strip()}"{attrs}>{escape_html(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _board_html(cmp: Comparison) -> str:
    header, rows = board_rows(cmp)
    values: list[list[float | None]] = []
    tips: list[list[str]] = []
    ranks = cmp.ranks()
    for e in cmp.ordered():
        cells = [e.cells.get(t) for t in cmp.tasks]
        values.append([float(ranks.get(e.label, 10 ** 6)), None,
                       *(100 * c.score if c else None for c in cells),
                       100 * cmp.average(e), None, None])
        tips.append(["", e.source, *(_cell_tip(c) for c in cells), "", "", ""])
    return _html_table(header, rows, table_id="board", values=values, flags=tips)


def _cell_tip(c: Cell | None) -> str:
    if c is None:
        return ""
    cfg = ", ".join(f"{k}={v}" for k, v in c.settings.items())
    return "; ".join([f"{c.protocol} ({c.evaluator})", cfg, f"data {_short(c.data)}",
                      *c.flags, c.source])


def bar_chart_svg(title: str, bars: Sequence[tuple[str, float, bool]], *,
                  width: int = 460) -> str:
    """A horizontal bar chart as inline SVG: ``(label, value x 100, flagged)`` per bar, flagged
    bars in orange.

    >>> svg = bar_chart_svg("T", [("a", 50.0, False), ("b", 25.0, True)])
    >>> svg.startswith("<svg") and "a" in svg and "#e69500" in svg
    True
    """
    row, label_w, top = 18, 220, 22
    height = top + row * len(bars) + 6
    finite = [v for _, v, _ in bars if not math.isnan(v)]
    hi = max([1.0, *finite])
    lo = min([0.0, *finite])
    scale = (width - label_w - 50) / (hi - lo)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img"><text x="4" y="15" font-size="13" font-weight="bold">{escape_html(title)}'
             "</text>"]
    for i, (label, v, flagged) in enumerate(bars):
        y = top + i * row
        short = label if len(label) <= 34 else label[:33] + "…"
        parts.append(f'<text x="{label_w - 4}" y="{y + 12}" font-size="11" '
                     f'text-anchor="end"><title>{escape_html(label)}</title>{escape_html(short)}</text>')
        if math.isnan(v):
            continue
        x0 = label_w + (min(v, 0.0) - lo) * scale
        color = "#e69500" if flagged else "#4c78a8"
        parts.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{abs(v) * scale:.1f}" '
                     f'height="{row - 5}" fill="{color}"/>')
        parts.append(f'<text x="{label_w + (max(v, 0.0) - lo) * scale + 3:.1f}" y="{y + 12}" '
                     f'font-size="11">{v:.2f}{"*" if flagged else ""}</text>')
    return "".join(parts) + "</svg>"


def _task_charts(cmp: Comparison) -> str:
    charts = []
    for t in cmp.tasks:
        bars = sorted(((e.label, 100 * e.cells[t].score, bool(e.cells[t].flags))
                       for e in cmp.entries if t in e.cells), key=lambda b: -b[1])
        charts.append(f'<div class="chart">{bar_chart_svg(t, bars)}</div>')
    avg = sorted(((e.label, 100 * cmp.average(e), any(c.flags for c in e.cells.values()))
                  for e in cmp.entries if cmp.complete(e)), key=lambda b: -b[1])
    if avg:
        charts.insert(0, f'<div class="chart">{bar_chart_svg("average", avg)}</div>')
    return '<div class="charts">' + "".join(charts) + "</div>"


def _inline_png(path: Path) -> str:
    import base64

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape_html(path.name)}" title="{escape_html(path)}" src="data:image/png;base64,{data}">'


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


def html_report(cmp: Comparison, title: str = "Model comparison") -> str:
    """One self-contained HTML page (no network): the sortable leaderboard (hover a cell for
    its provenance), per-task inline SVG bar charts, the flags, every cell's provenance, and
    the records' own plots inlined as PNG."""
    header, rows = provenance_rows(cmp)
    notes = "".join(f"<li>{escape_html(n)}</li>" for n in flag_notes(cmp))
    plots = _record_plots(cmp)
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape_html(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape_html(title)}</h1><p>{escape_html(cmp.metric.capitalize())} x 100 of cosine similarity "
        f"on the {escape_html(cmp.split)} split. Click a column header to sort; hover a cell for the "
        "protocol, settings, data and file behind it. <b>*</b> (orange): computed under another "
        "protocol or on other data than the rest of its column; not comparable.</p>",
        "<h2>Leaderboard</h2>", _board_html(cmp),
        f"<h2>Not comparable</h2><ul>{notes}</ul>" if notes else "",
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


def save_plot(cmp: Comparison, path: str | os.PathLike) -> Path:
    """A PNG heatmap of entries x (tasks, avg), values annotated, flagged cells marked ``*``
    (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the plot needs matplotlib: pip install 'embedkit[plot]'",
                          param="plot") from None
    import numpy as np

    entries = cmp.ordered()
    cols = [*cmp.tasks, "avg"]
    grid = np.array([[100 * e.cells[t].score if t in e.cells else np.nan for t in cmp.tasks]
                     + [100 * cmp.average(e)] for e in entries], dtype=float)
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
