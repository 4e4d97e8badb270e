"""Sweep the whitening family ``(beta, gamma, k)`` on cached embeddings, with honest selection.

Sigma depends only on ``beta``: the statistics ``(n, mean, M2)`` are accumulated once per task
and pooling, Sigma is eigen-decomposed once per ``beta`` (:func:`~embedkit.postprocess.whitening.
sigma_eigen`), and every ``(gamma, k)`` kernel is derived from the same eigenvalues and
eigenvectors (:class:`WhiteningFamily`). Scoring rotates each evaluation vector once per ``beta``;
the cosine of every ``(gamma, k)`` then follows from per-dimension products weighted by
``lambda^-gamma`` and summed over the first ``k`` dimensions (one small matrix product), so a
60-setting grid on five tasks takes seconds once the vectors are cached.

The best setting per task is chosen on ``select_on`` (valid) and reported on ``report_on``
(test), beside the raw score and the classic ``beta = gamma = 1, k = all``.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 6)) * [1, 2, 3, 4, 5, 6]
>>> fam = WhiteningFamily.fit(X, beta=1.0)
>>> K, b = fam.kernel(gamma=0.5, k=3)
>>> w = Whitening(beta=1.0, gamma=0.5, n_components=3).fit(X)
>>> bool(np.allclose(K, w.kernel_) and np.allclose(b, w.bias_))
True
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import ConfigError, EmbedkitError
from embedkit.postprocess.whitening import Whitening, eigen_scale, sigma_eigen

__all__ = [
    "WhiteningFamily",
    "parse_grid",
    "setting_label",
    "score_grid",
    "sweep_vectors",
    "run_sweep",
    "format_sweep_table",
    "sweep_markdown",
    "write_plots",
]

CLASSIC = (1.0, 1.0, "all")


# -- grids ------------------------------------------------------------------------------------

def parse_grid(text: str | Sequence, what: str) -> list:
    """``"0,0.5,1"`` -> floats (``what`` beta/gamma); for ``what="k"`` positive ints or "all".

    >>> parse_grid("0, 0.5,1", "beta"), parse_grid("64,all", "k")
    ([0.0, 0.5, 1.0], [64, 'all'])
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list = []
    for raw in items:
        tok = str(raw).strip()
        if not tok:
            continue
        try:
            if what == "k":
                if tok.lower() == "all":
                    value: Any = "all"
                else:
                    value = int(tok)
                    if value < 1:
                        raise ValueError
            else:
                value = float(tok)
                if not math.isfinite(value):
                    raise ValueError
        except ValueError:
            expected = "positive integers or 'all'" if what == "k" else "numbers"
            raise ConfigError(f"--{what} {text!r}: {tok!r} is not valid; expected "
                              f"comma-separated {expected}") from None
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError(f"--{what}: empty grid")
    return out


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def setting_label(beta: float, gamma: float, k: int | str) -> str:
    """The ``--post`` spec of a setting: ``whiten:beta=1,gamma=0.5,k=256``.

    >>> setting_label(1.0, 0.5, "all")
    'whiten:beta=1,gamma=0.5,k=all'
    """
    return f"whiten:beta={_num(beta)},gamma={_num(gamma)},k={k}"


# -- the family -------------------------------------------------------------------------------

@dataclass
class WhiteningFamily:
    """One eigen-decomposition of ``Sigma(beta)``; every ``(gamma, k)`` kernel derives from it."""

    beta: float
    mean: np.ndarray
    eigenvalues: np.ndarray
    components: np.ndarray  # d x d, rows are directions (sign-normalised as Whitening's)
    eps: float = 1e-6

    @classmethod
    def from_stats(cls, stats: Whitening, beta: float, eps: float = 1e-6) -> WhiteningFamily:
        """From a (partially) fitted :class:`Whitening` holding ``(n, mean, M2)``."""
        evals, components = sigma_eigen(stats.mean_, stats._m2, stats.n_samples_seen_,
                                        float(beta))
        return cls(float(beta), stats.mean_, evals, components, float(eps))

    @classmethod
    def fit(cls, X: np.ndarray, beta: float, eps: float = 1e-6) -> WhiteningFamily:
        return cls.from_stats(Whitening().partial_fit(X), beta, eps)

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])

    @property
    def bias(self) -> np.ndarray:
        return -self.beta * self.mean

    def resolve_k(self, k: int | str) -> int:
        return self.d if k == "all" else int(k)

    def kernel(self, gamma: float, k: int | str) -> tuple[np.ndarray, np.ndarray]:
        """``(kernel d x k, bias d)``, equal to ``Whitening(beta, gamma, k).fit(X)``'s."""
        kk = self.resolve_k(k)
        scale, _, _ = eigen_scale(self.eigenvalues, kk, float(gamma), self.eps)
        return self.components[:kk].T * scale[None, :], self.bias

    def scale_squared(self, gammas: Sequence[float], kmax: int) -> np.ndarray:
        """``kmax x len(gammas)``: the squared scale of each kept direction, per gamma."""
        cols = [eigen_scale(self.eigenvalues, kmax, float(g), self.eps)[0] ** 2 for g in gammas]
        return np.stack(cols, axis=1)


def score_grid(family: WhiteningFamily, gammas: Sequence[float], ks: Sequence[int],
               pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
               ) -> dict[str, np.ndarray]:
    """Spearman of cosine for every ``(gamma, k)``: ``{name: array len(gammas) x len(ks)}``.

    ``pairs`` maps a split name to ``(X1, X2, labels)``. Equal (to rounding) to scoring
    ``(X + bias) @ kernel`` of each setting, but the rotation is done once.
    """
    from embedkit.evaluation.metrics import quantize_cosines, spearman

    kmax = max(ks)
    C = family.components[:kmax]
    S = family.scale_squared(gammas, kmax)  # kmax x G
    mask = (np.arange(kmax)[:, None] < np.asarray(ks)[None, :]).astype(np.float64)  # kmax x K
    W = (S[:, :, None] * mask[:, None, :]).reshape(kmax, len(gammas) * len(ks))
    out = {}
    for name, (X1, X2, labels) in pairs.items():
        Z1 = (np.asarray(X1, np.float64) + family.bias) @ C.T
        Z2 = (np.asarray(X2, np.float64) + family.bias) @ C.T
        dot = (Z1 * Z2) @ W
        n1 = (Z1 * Z1) @ W
        n2 = (Z2 * Z2) @ W
        den = np.sqrt(n1 * n2)
        cos = quantize_cosines(np.divide(dot, den, out=np.zeros_like(dot), where=den > 0))
        scores = np.array([spearman(cos[:, j], labels) for j in range(cos.shape[1])])
        out[name] = scores.reshape(len(gammas), len(ks))
    return out


def _accumulate(vectors: np.ndarray, rows: np.ndarray, counts: np.ndarray,
                chunk: int = 8192) -> Whitening:
    """Statistics of ``vectors[rows]`` each repeated ``counts`` times, in bounded memory."""
    stats = Whitening()
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        c = counts[start:start + chunk]
        block = vectors[r]
        stats.partial_fit(np.repeat(block, c, axis=0) if c.max() > 1 else block)
    return stats


def sweep_vectors(fit_stats: Whitening, pairs: dict[str, tuple], *, betas: Sequence[float],
                  gammas: Sequence[float], ks: Sequence[int | str], select_on: str,
                  report_on: str, eps: float = 1e-6) -> dict:
    """The sweep of one task and pooling, from fitted statistics and the evaluation pairs.

    Returns ``{"d", "raw", "classic", "settings" (one dict per setting, grid order), "best",
    "skipped_k"}``; scores are Spearman (fractions, not x 100).
    """
    from embedkit.evaluation.metrics import pair_scores

    d = int(fit_stats.mean_.shape[0])
    kept = [k for k in ks if k == "all" or int(k) <= d]
    skipped = [k for k in ks if k not in kept]
    if not kept:
        raise ConfigError(f"every --k value is larger than the dimension d={d}; use k <= {d} "
                          "or all")
    k_dims = [d if k == "all" else int(k) for k in kept]
    raw = {role: pair_scores(*pairs[split])["spearman"]
           for role, split in (("select", select_on), ("report", report_on))}
    wanted = {select_on: pairs[select_on], report_on: pairs[report_on]}
    settings = []
    families: dict[float, WhiteningFamily] = {}
    for beta in betas:
        fam = families[float(beta)] = WhiteningFamily.from_stats(fit_stats, beta, eps)
        scores = score_grid(fam, gammas, k_dims, wanted)
        for gi, gamma in enumerate(gammas):
            for ki, k in enumerate(kept):
                settings.append({
                    "beta": float(beta), "gamma": float(gamma), "k": k, "k_dim": k_dims[ki],
                    "post": setting_label(beta, gamma, k),
                    "select": float(scores[select_on][gi, ki]),
                    "report": float(scores[report_on][gi, ki]),
                })
    classic = next((s for s in settings if (s["beta"], s["gamma"], s["k"]) == CLASSIC), None)
    if classic is None:
        fam = families.get(1.0) or WhiteningFamily.from_stats(fit_stats, 1.0, eps)
        scores = score_grid(fam, [1.0], [d], wanted)
        classic = {"beta": 1.0, "gamma": 1.0, "k": "all", "k_dim": d,
                   "post": setting_label(1.0, 1.0, "all"),
                   "select": float(scores[select_on][0, 0]),
                   "report": float(scores[report_on][0, 0])}
    finite = [i for i, s in enumerate(settings) if not math.isnan(s["select"])]
    best = None
    if finite:
        i = max(finite, key=lambda j: (settings[j]["select"], -j))  # ties: first in the grid
        best = {**settings[i], "index": i}
    return {"d": d, "raw": raw, "classic": dict(classic), "settings": settings, "best": best,
            "skipped_k": skipped}


# -- the run ----------------------------------------------------------------------------------

def run_sweep(model, poolings: Sequence[str] | str | None = None,
              tasks: Sequence | str | None = None, *, betas: Sequence[float] = (0.0, 0.5, 1.0),
              gammas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
              ks: Sequence[int | str] = (64, 128, 256, "all"), fit_on: str = "task",
              fit_unique: bool = False, select_on: str = "valid", report_on: str = "test",
              max_length: int | None = None, batch_size: int = 64, device: str | None = "cpu",
              dtype: str = "float32", lowercase: bool = False,
              data_dir: str | os.PathLike | None = None, source: str = "auto",
              cache=True, skip_invalid: bool = False, eps: float = 1e-6,
              progress: bool | None = None, command: str | None = None) -> dict:
    """Encode each task once (through the cache), sweep the grid, select honestly; a record."""
    from embedkit.experiments.bench import fit_sentences, split_poolings
    from embedkit.encoders.cache import EmbeddingCache
    from embedkit.data import load_task, parse_tasks
    from embedkit.data.spec import TaskSpec, canonical_split
    from embedkit.encoders import Encoder
    from embedkit.provenance import library_versions, machine_description, sha256_text

    t_start = time.perf_counter()
    betas = parse_grid(betas, "beta")
    gammas = parse_grid(gammas, "gamma")
    ks = parse_grid(ks, "k")
    select_on, report_on = canonical_split(select_on), canonical_split(report_on)
    if cache is True:
        cache = EmbeddingCache()
    elif cache is False:
        cache = None
    encoder = model if isinstance(model, Encoder) else Encoder(
        model, device=device, dtype=dtype, lowercase=lowercase, cache=cache,
        batch_size=batch_size, progress=progress)
    poolings = split_poolings(poolings) or [encoder.default_pooling]
    specs = parse_tasks(tasks) if tasks is None or isinstance(tasks, str) else [
        t if isinstance(t, TaskSpec) else parse_tasks(t)[0] for t in tasks]
    for spec in specs:
        for role, split in (("--select-on", select_on), ("--report-on", report_on)):
            if split not in spec.splits:
                raise ConfigError(f"{role} {split}: task {spec.name} has no {split} split (it "
                                  f"has {', '.join(spec.splits)})")
    eval_splits = list(dict.fromkeys([select_on, report_on]))

    data_record: dict = {}
    results: dict = {}
    max_lengths: dict = {}
    seconds_sweep = 0.0
    for spec in specs:
        data = load_task(spec, eval_splits, data_dir=data_dir, source=source,
                         skip_invalid=skip_invalid)
        max_len = int(max_length or spec.max_length)
        max_lengths[spec.name] = max_len
        data_record[spec.name] = {s: {"source": d.source, "sha256": d.sha256,
                                      "n_pairs": d.n_pairs, "skipped": d.skipped}
                                  for s, d in data.items()}
        fsents, fwhat = fit_sentences(fit_on, spec, data, data_dir=data_dir, source=source,
                                      skip_invalid=skip_invalid, unique=fit_unique)
        if not fsents:
            raise ConfigError(f"--fit-on {fit_on}: no sentences to fit on for {spec.name}")
        data_record[spec.name]["fit"] = {"on": fwhat, "n_sentences": len(fsents),
                                         "unique": fit_unique,
                                         "sha256": sha256_text("\n".join(fsents))}
        counts: dict[str, int] = {}
        for s in fsents:
            counts[s] = counts.get(s, 0) + 1
        union = list(dict.fromkeys([*(t for d in data.values()
                                      for t in (*d.sentences1, *d.sentences2)), *counts]))
        row_of = {s: i for i, s in enumerate(union)}
        vecs = encoder.encode_multi(union, poolings, max_length=max_len, batch_size=batch_size)
        fit_rows = np.fromiter((row_of[s] for s in counts), dtype=np.int64, count=len(counts))
        fit_counts = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
        results[spec.name] = {}
        for pooling in poolings:
            v = vecs[pooling]
            t0 = time.perf_counter()
            stats = _accumulate(v, fit_rows, fit_counts)
            pairs = {split: (v[[row_of[t] for t in d.sentences1]],
                             v[[row_of[t] for t in d.sentences2]], d.labels)
                     for split, d in data.items()}
            res = sweep_vectors(stats, pairs, betas=betas, gammas=gammas, ks=ks,
                                select_on=select_on, report_on=report_on, eps=eps)
            seconds_sweep += time.perf_counter() - t0
            res["n_fit"] = int(stats.n_samples_seen_)
            results[spec.name][pooling] = res

    n_settings = len(betas) * len(gammas) * len(ks)
    stats_enc = encoder.stats.as_dict()
    return {
        "kind": "sweep",
        "embedkit": library_versions()["embedkit"],
        "versions": library_versions(("matplotlib",)),
        "machine": machine_description(),
        "command": command,
        "model": encoder.describe(),
        "settings": {
            "poolings": poolings, "tasks": [s.name for s in specs],
            "task_specs": {s.name: s.origin for s in specs},
            "betas": betas, "gammas": gammas, "ks": ks, "eps": eps,
            "fit_on": fit_on, "fit_unique": fit_unique,
            "select_on": select_on, "report_on": report_on, "max_length": max_lengths,
            "batch_size": batch_size, "device": str(encoder.device),
            "dtype": encoder.dtype_name, "lowercase": encoder.lowercase,
            "data_dir": str(data_dir or os.environ.get("EMBEDKIT_DATA") or ""),
            "source": source, "cache": str(cache.root) if cache is not None else None,
            "skip_invalid": skip_invalid,
            "honest": select_on != report_on,
        },
        "data": data_record,
        "results": results,
        "timings": {**stats_enc, "seconds_sweep": round(seconds_sweep, 3),
                    "n_settings": n_settings,
                    "n_scored": sum(len(r["settings"]) for by_pool in results.values()
                                    for r in by_pool.values()),
                    "seconds_total": round(time.perf_counter() - t_start, 3)},
    }


# -- output -----------------------------------------------------------------------------------

def _x100(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else float("nan")


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
    """One PNG per task and pooling: Spearman x 100 on the report split against k, one line per
    (beta, gamma), the raw score as a dashed horizontal line. Needs matplotlib (``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EmbedkitError("--plots needs matplotlib: pip install 'embedkit[plot]'") from exc
    from embedkit.io.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rep = record["settings"]["report_on"]
    written = []
    for task, by_pool in record["results"].items():
        for pooling, r in by_pool.items():
            lines: dict[tuple, list] = {}
            for s in r["settings"]:
                lines.setdefault((s["beta"], s["gamma"]), []).append((s["k_dim"], s["report"]))
            fig, ax = plt.subplots(figsize=(8, 5))
            try:
                betas = sorted({b for b, _ in lines})
                gammas = sorted({g for _, g in lines})
                cmap = plt.get_cmap("viridis")
                styles = ["-", "--", ":", "-."]
                for (beta, gamma), pts in lines.items():
                    pts.sort()
                    color = cmap(gammas.index(gamma) / max(1, len(gammas) - 1))
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o",
                            markersize=3, color=color,
                            linestyle=styles[betas.index(beta) % len(styles)],
                            label=f"beta={_num(beta)}, gamma={_num(gamma)}")
                ax.axhline(100 * r["raw"]["report"], color="black", linestyle="--",
                           linewidth=1.2, label="raw (no postprocessing)")
                kd = sorted({s["k_dim"] for s in r["settings"]})
                if len(kd) > 1 and kd[-1] / kd[0] >= 4:
                    ax.set_xscale("log", base=2)
                ax.set_xticks(kd)
                ax.set_xticklabels([str(k) for k in kd])
                ax.set_xlabel("k (dimensions kept)")
                ax.set_ylabel(f"Spearman x 100 ({rep})")
                ax.set_title(f"{task}, {pooling}: whitening sweep ({record['model']['name']})")
                ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
                fig.tight_layout()
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
    from embedkit.experiments.report import provenance_lines

    s = record["settings"]
    m = record["model"]
    t = record["timings"]
    occurrences = "unique sentences" if s["fit_unique"] else "every occurrence"
    out = [f"# embedkit sweep: {m['name']}", ""]
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


def warn(msg: str) -> None:
    print(f"embedkit: warning: {msg}", file=sys.stderr)
