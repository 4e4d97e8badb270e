"""``embedkit sweep``: the whitening family ``(beta, gamma, k)`` on one encoding per task, with
honest selection, and its tables, Markdown report and plots (drawn by :mod:`.sweep_plots`).

Each task is encoded once (through the encoder's cache); the moments are accumulated once per
task and pooling, Sigma is eigen-decomposed once per ``beta`` and every ``(gamma, k)`` is scored
from the same decomposition (:class:`~embedkit.postprocess.WhiteningFamily`), so a 60-setting
grid on five tasks takes seconds once the vectors are cached. The best setting per task is
chosen on ``select_on`` (valid) and reported on ``report_on`` (test), beside the raw score and
the classic ``beta = gamma = 1, k = all``.

>>> opts = SweepOptions(beta=(1.0,), gamma=(0.5, 1.0), k=(64, "all"))
>>> opts.n_settings, setting_label(1.0, 0.5, "all")
(4, 'whiten:beta=1,gamma=0.5,k=all')
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.data import PairSplit, load_task, parse_tasks
from embedkit.data.registry import get_task
from embedkit.data.selection import collect_fit_sentences
from embedkit.data.spec import TaskSpec, canonical_split
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.errors import ConfigError
from embedkit.evaluation import get_protocol, pair_scores, quantize_cosines, spearman
from embedkit.experiments.bench import DataOptions
from embedkit.experiments.pair_extras import setting_classification
from embedkit.experiments.record import (
    data_dir_setting,
    run_record,
    split_summary,
    timings,
    truncation_counts,
)
from embedkit.experiments.report import (
    provenance_lines,
    run_title,
    sweep_classification_section,
)
from embedkit.experiments.sweep_plots import _pyplot, sweep_figure
from embedkit.io.atomic import atomic_path
from embedkit.postprocess import RunningMoments, WhiteningFamily, score_grid
from embedkit.postprocess.spec import PostOptions, _num  # the number format of whitening specs

__all__ = [
    "SweepOptions",
    "run_sweep",
    "sweep_vectors",
    "setting_label",
    "format_sweep_table",
    "grid_table",
    "headline_table",
    "sweep_markdown",
    "write_plots",
    "plot_name",
]

CLASSIC = (1.0, 1.0, "all")
#: rows of vectors added to the moments at a time (bounds memory whatever the repeats)
_CHUNK = 8192


def _unique(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _check_grid(name: str, values: Sequence[Any]) -> tuple[Any, ...]:
    out = _unique(values)
    if not out:
        raise ConfigError(f"{name}: empty grid", param=name)
    for v in out:
        if name == "k":
            ok = v == "all" or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                and v >= 1)
        else:
            ok = isinstance(v, (int, float, np.number)) and math.isfinite(float(v))
        if not ok:
            expected = "positive integers or 'all'" if name == "k" else "finite numbers"
            raise ConfigError(f"{name}: {v!r} is not valid; expected {expected}", param=name)
    return tuple(out if name == "k" else (float(v) for v in out))


@dataclass(frozen=True)
class SweepOptions:
    """The grid (``beta``, ``gamma``, ``k`` values; ``eps`` of the eigenvalue floor), what the
    maps are fitted on (``post``: its ``fit_on``, task, a split name or a file, and
    ``fit_unique``; its chains are unused, the grid makes them) and the split
    the best setting is chosen on (``select_on``) and reported on (``report_on``);
    ``classify``: on binary tasks, the best setting's pair classification too (thresholds
    chosen on ``select_on``, reported on ``report_on``; ``best["classification"]``)."""

    beta: Sequence[float] = (0.0, 0.5, 1.0)
    gamma: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    k: Sequence[int | str] = (64, 128, 256, "all")
    eps: float = 1e-6
    post: PostOptions = field(default_factory=PostOptions)
    select_on: str = "valid"
    report_on: str = "test"
    classify: bool = False

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "k"):
            object.__setattr__(self, name, _check_grid(name, getattr(self, name)))
        object.__setattr__(self, "select_on", canonical_split(self.select_on))
        object.__setattr__(self, "report_on", canonical_split(self.report_on))

    @property
    def n_settings(self) -> int:
        return len(self.beta) * len(self.gamma) * len(self.k)

    @property
    def honest(self) -> bool:
        """Whether the best setting is reported on another split than it was chosen on."""
        return self.select_on != self.report_on


def setting_label(beta: float, gamma: float, k: int | str) -> str:
    """The post-processing spec of a setting: ``whiten:beta=1,gamma=0.5,k=256``."""
    return f"whiten:beta={_num(beta)},gamma={_num(gamma)},k={k}"


def _spearman_of_cosines(cos: np.ndarray, labels: np.ndarray) -> float:
    """The evaluation layer's score of cosines: Spearman of the quantised cosines."""
    return spearman(quantize_cosines(cos), labels)


# -- one task and pooling ---------------------------------------------------------------------

def _setting(beta: float, gamma: float, k: int | str, k_dim: int,
             scores: Mapping[str, np.ndarray], at: tuple[int, int], opts: SweepOptions) -> dict:
    return {"beta": float(beta), "gamma": float(gamma), "k": k, "k_dim": k_dim,
            "post": setting_label(beta, gamma, k),
            "select": float(scores[opts.select_on][at]),
            "report": float(scores[opts.report_on][at])}


def sweep_vectors(moments: RunningMoments, pairs: Mapping[str, tuple], opts: SweepOptions
                  ) -> dict[str, Any]:
    """The sweep of one task and pooling, from the fit vectors' moments and the evaluation
    pairs (``{split: (X1, X2, labels)}``).

    Returns ``{"d", "raw", "classic", "settings" (one dict per setting, grid order), "best",
    "skipped_k"}``; scores are Spearman (fractions, not x 100).
    """
    d = int(moments.d or 0)
    kept = [k for k in opts.k if k == "all" or int(k) <= d]
    if not kept:
        raise ConfigError(f"every k value is larger than the dimension d={d}; use k <= {d} "
                          "or all", param="k")
    k_dims = [d if k == "all" else int(k) for k in kept]
    distinct = moments.distinct
    if max(k_dims) > distinct:
        raise ConfigError(
            f"the grid keeps up to k={max(k_dims)} directions but the fit vectors hold only "
            f"{distinct} distinct ones (of {moments.n}): the other directions would be "
            f"arbitrary; give k values <= {distinct} (no 'all') or fit on more sentences",
            param="k")
    raw = {role: pair_scores(*pairs[split])["spearman"]
           for role, split in (("select", opts.select_on), ("report", opts.report_on))}
    wanted = {s: pairs[s] for s in (opts.select_on, opts.report_on)}
    settings = []
    families: dict[float, WhiteningFamily] = {}
    for beta in opts.beta:
        fam = families[beta] = WhiteningFamily.from_stats(moments, beta, opts.eps)
        scores = score_grid(fam, opts.gamma, k_dims, wanted, _spearman_of_cosines)
        settings += [_setting(beta, gamma, k, k_dims[ki], scores, (gi, ki), opts)
                     for gi, gamma in enumerate(opts.gamma) for ki, k in enumerate(kept)]
    classic = next((s for s in settings if (s["beta"], s["gamma"], s["k"]) == CLASSIC), None)
    if classic is None and distinct < d:  # cannot be meaningful: not scored
        classic = {"beta": 1.0, "gamma": 1.0, "k": "all", "k_dim": d,
                   "post": setting_label(1.0, 1.0, "all"), "select": math.nan,
                   "report": math.nan,
                   "note": f"not scored: {distinct} distinct fit vectors < d={d}"}
    elif classic is None:
        fam = families.get(1.0) or WhiteningFamily.from_stats(moments, 1.0, opts.eps)
        scores = score_grid(fam, [1.0], [d], wanted, _spearman_of_cosines)
        classic = _setting(1.0, 1.0, "all", d, scores, (0, 0), opts)
    finite = [i for i, s in enumerate(settings) if not math.isnan(s["select"])]
    best = None
    if finite:
        i = max(finite, key=lambda j: (settings[j]["select"], -j))  # ties: first in the grid
        best = {**settings[i], "index": i}
    return {"d": d, "raw": raw, "classic": dict(classic), "settings": settings, "best": best,
            "skipped_k": [k for k in opts.k if k not in kept]}


def _moments(vectors: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> RunningMoments:
    """Moments of ``vectors[rows]`` each repeated ``counts`` times, in bounded memory."""
    stats = RunningMoments()
    for start in range(0, len(rows), _CHUNK):
        r = rows[start:start + _CHUNK]
        c = counts[start:start + _CHUNK]
        block = vectors[r]
        stats.update(np.repeat(block, c, axis=0) if c.max() > 1 else block)
    return stats


# -- the run ----------------------------------------------------------------------------------

def run_sweep(encoder: SentenceEncoder | EncoderConfig | str,
              poolings: Sequence[str] | None = None,
              tasks: Sequence[str | TaskSpec] | str | None = None,
              options: SweepOptions | None = None, *, protocol: str = "whitening",
              max_length: int | None = None, data: DataOptions | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Encode each task once, sweep the grid per pooling, select honestly; the JSON record.

    The max length per task follows the evaluation ``protocol`` (``max_length`` overrides it).
    """
    t_start = time.perf_counter()
    opts = options or SweepOptions()
    data = data or DataOptions()
    enc = as_encoder(encoder)
    pools = list(dict.fromkeys(Pooling(p) for p in (poolings or ()))) or [enc.default_pooling]
    specs = _task_specs(tasks, opts)
    check_grid_k(opts.k, int(enc.dim or 0))  # before any encoding
    proto = get_protocol(protocol)
    max_lengths = {s.name: proto.max_length(s, enc.model_max_length(), max_length)
                   for s in specs}
    data_record: dict[str, Any] = {}
    results: dict[str, Any] = {}
    seconds = 0.0
    truncated: dict[str, dict[str, dict[str, int]]] = {"truncated": {}, "truncated_of": {}}
    for spec in specs:
        data_record[spec.name], results[spec.name], sec, counts = _sweep_task(
            spec, enc, pools, opts, data, max_lengths[spec.name])
        seconds += sec
        for key, value in zip(truncated, counts or (), strict=False):
            truncated[key].update(value)
    settings = {
        "poolings": [str(p) for p in pools], "tasks": [s.name for s in specs],
        "task_specs": {s.name: s.origin for s in specs},
        "betas": list(opts.beta), "gammas": list(opts.gamma), "ks": list(opts.k),
        "eps": opts.eps, "fit_on": opts.post.fit_on, "fit_unique": opts.post.fit_unique,
        "select_on": opts.select_on, "report_on": opts.report_on, "classify": opts.classify,
        "protocol": proto.name,
        "max_length": max_lengths, "data_dir": data_dir_setting(data.data_dir),
        "source": data.source, "skip_invalid": data.skip_invalid, "honest": opts.honest}
    record = run_record("sweep", command=command, encoder=enc, settings=settings,
                        data=data_record, versions_extra=("matplotlib",))
    record["results"] = results
    if truncated["truncated"]:  # the encoder counts truncated sentences (count_truncated)
        record.update(truncated)
    n_scored = sum(len(r["settings"]) for by_pool in results.values() for r in by_pool.values())
    record["timings"] = timings(enc, t_start, seconds_sweep=round(seconds, 3),
                                n_settings=opts.n_settings, n_scored=n_scored)
    return record


def check_grid_k(ks: Sequence[int | str], d: int, distinct: int | None = None) -> None:
    """Refuse, before any encoding, a grid whose every k exceeds the dimension ``d``, or
    whose largest kept k exceeds the ``distinct`` fit sentences (their vectors span at most
    that many directions); ``d`` 0: unknown, not checked.

    >>> check_grid_k([64, "all"], 32)
    >>> check_grid_k([64, 128], 32)
    Traceback (most recent call last):
    embedkit.errors.ConfigError: every k value is larger than the dimension d=32; use k <= 32 or all
    """
    if not d:
        return
    kept = [d if k == "all" else int(k) for k in ks if k == "all" or int(k) <= d]
    if not kept:
        raise ConfigError(f"every k value is larger than the dimension d={d}; use k <= {d} "
                          "or all", param="k")
    if distinct is not None and max(kept) > distinct:
        raise ConfigError(
            f"the grid keeps up to k={max(kept)} directions but the fit sentences hold only "
            f"{distinct} distinct ones: the other directions would be arbitrary; give k values "
            f"<= {distinct} (no 'all') or fit on more sentences", param="k")


def _task_specs(tasks: Sequence[str | TaskSpec] | str | None, opts: SweepOptions
                ) -> list[TaskSpec]:
    specs = parse_tasks(tasks) if tasks is None or isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    for spec in specs:
        for param, split in (("select_on", opts.select_on), ("report_on", opts.report_on)):
            if split not in spec.splits:
                raise ConfigError(f"{param} {split}: task {spec.name} has no {split} split (it "
                                  f"has {', '.join(spec.splits)})", param=param)
    return specs


def _sweep_task(spec: TaskSpec, enc: SentenceEncoder, pools: list[Pooling], opts: SweepOptions,
                data: DataOptions, max_len: int) -> tuple[dict, dict, float, tuple | None]:
    """One task: load, encode the evaluation and fit sentences once, sweep every pooling.
    Returns the task's data record, its results per pooling, the seconds spent sweeping and
    the truncation counts (:func:`truncation_counts`; None when the encoder cannot count)."""
    splits = load_task(spec, list(dict.fromkeys([opts.select_on, opts.report_on])),
                       data_dir=data.data_dir, source=data.source,
                       skip_invalid=data.skip_invalid)
    fit = collect_fit_sentences(opts.post.fit_on, spec, splits, data_dir=data.data_dir,
                                source=data.source, skip_invalid=data.skip_invalid,
                                unique=opts.post.fit_unique)
    if not fit.sentences:
        raise ConfigError(f"fit_on {opts.post.fit_on}: no sentences to fit on for {spec.name}",
                          param="fit_on")
    check_grid_k(opts.k, int(enc.dim or 0), len(set(fit.sentences)))  # before encoding
    record: dict[str, Any] = {**split_summary(splits), "fit": fit.record()}
    counts: dict[str, int] = {}
    for s in fit.sentences:
        counts[s] = counts.get(s, 0) + 1
    union = list(dict.fromkeys([*(t for d in splits.values()
                                  for t in (*d.sentences1, *d.sentences2)), *counts]))
    row_of = {s: i for i, s in enumerate(union)}
    vecs = enc.encode_multi(union, pools, max_length=max_len)
    fit_rows = np.fromiter((row_of[s] for s in counts), dtype=np.int64, count=len(counts))
    fit_counts = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    results: dict[str, Any] = {}
    seconds = 0.0
    for pooling in pools:
        v = vecs[str(pooling)]
        t0 = time.perf_counter()
        moments = _moments(v, fit_rows, fit_counts)
        pairs = _pairs(splits, v, row_of)
        res = sweep_vectors(moments, pairs, opts)
        seconds += time.perf_counter() - t0
        if opts.classify and spec.is_binary and res["best"] is not None:
            res["best"]["classification"] = setting_classification(
                moments, res["best"], opts.eps, pairs, splits[opts.select_on], opts.report_on)
        res["n_fit"] = int(moments.n)
        results[str(pooling)] = res
    truncated = truncation_counts(enc, {spec.name: splits}, {spec.name: max_len})
    return record, results, seconds, truncated


def _pairs(splits: Mapping[str, PairSplit], v: np.ndarray, row_of: Mapping[str, int]
           ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {split: (v[[row_of[t] for t in d.sentences1]], v[[row_of[t] for t in d.sentences2]],
                    d.labels) for split, d in splits.items()}


# -- output -----------------------------------------------------------------------------------

def _x100(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _mean(xs: list[float]) -> float:
    """The mean, NaN when any value is missing or NaN: an average over the tasks that happened
    to score would not be comparable with one over all of them."""
    if not xs or any(x is None or math.isnan(x) for x in xs):
        return float("nan")
    return float(np.mean(xs))


def summary_rows(record: dict) -> tuple[list[str], list[list[str]]]:
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
            rows.append([task, pooling, _x100(r["raw"]["report"]), best.get("post", "-"),
                         _x100(best.get("select")), _x100(best.get("report")),
                         _x100(r["classic"]["report"])])
            acc = per_pooling.setdefault(pooling, {"raw": [], "best": [], "classic": []})
            acc["raw"].append(r["raw"]["report"])
            acc["best"].append(best.get("report", float("nan")))
            acc["classic"].append(r["classic"]["report"])
    if len(record["results"]) > 1:
        for pooling, acc in per_pooling.items():
            rows.append(["avg", pooling, _x100(_mean(acc["raw"])), "(per task)", "",
                         _x100(_mean(acc["best"])), _x100(_mean(acc["classic"]))])
    return header, rows


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---", "---", "---:", "---"] + ["---:"] * (len(header) - 4))
                 + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {0, 1, 3}
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in [header, *rows])


def format_sweep_table(record: dict, markdown: bool = False) -> str:
    """The summary: per task raw, best setting (chosen on select_on), its scores, classic."""
    return _table(*summary_rows(record), markdown=markdown)


def grid_table(result: dict, report_on: str, select_on: str) -> str:
    """A Markdown table of one task's grid: rows (beta, gamma), columns k, cells
    ``report (select)`` x 100."""
    ks = list(dict.fromkeys(s["k"] for s in result["settings"]))
    rows: dict[tuple, dict] = {}
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
            cell = f"{_x100(s['report'])} ({_x100(s['select'])})"
            if best is not None and result["settings"][best] is s:
                cell = f"**{cell}**"
            cells.append(cell)
        out.append(f"| {_num(beta)} | {_num(gamma)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


HEADLINE_SETTINGS = ((1.0, 1.0), (0.0, 0.0), (0.5, 0.5))


def headline_table(record: dict, pairs: Sequence[tuple[float, float]] = HEADLINE_SETTINGS) -> str:
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
            _x100(r["raw"]["report"]) if r else "-" for r in res.values()) + " |")
        for beta, gamma in pairs:
            cells, ks = [], None
            for r in res.values():
                found = [x for x in (r or {}).get("settings", [])
                         if float(x["beta"]) == beta and float(x["gamma"]) == gamma]
                if not found:
                    cells.append("-")
                    continue
                ks = ks or [str(x["k"]) for x in found]
                cells.append(" / ".join(_x100(x["report"]) for x in found))
            if ks is None:
                continue
            out.append(f"| {pooling} | beta={_num(beta)}, gamma={_num(gamma)}: k="
                       f"{' / '.join(ks)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def plot_name(task: str, pooling: str) -> str:
    """File name of a task's plot: ``<task>-<pooling>.png`` (odd characters replaced)."""
    return f"{_slug(task)}-{_slug(pooling)}.png"


def write_plots(record: dict, folder: str | os.PathLike) -> list[Path]:
    """One PNG per task and pooling (:func:`~embedkit.experiments.sweep_plots.sweep_figure`).
    Needs matplotlib (``plot`` extra)."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task, by_pool in record["results"].items():
        for pooling in by_pool:
            fig = sweep_figure(record, task, pooling)
            try:
                path = folder / plot_name(task, pooling)
                with atomic_path(path, suffix=".png") as tmp:
                    fig.savefig(tmp, format="png", dpi=100)
                written.append(path)
            finally:
                plt.close(fig)
    return written


def sweep_markdown(record: dict, plots: Sequence[Path] | None = None,
                   markdown_path: str | os.PathLike | None = None) -> str:
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
                    f"chosen on {s['select_on']}; raw {_x100(r['raw']['report'])} "
                    f"({_x100(r['raw']['select'])}); d = {r['d']}, fitted on {r['n_fit']} "
                    "vectors", ""]
            if r["skipped_k"]:
                out += [f"k > d skipped: {', '.join(map(str, r['skipped_k']))}", ""]
            out += [grid_table(r, s["report_on"], s["select_on"]), ""]
            p = plot_of.get(plot_name(task, pooling))
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
