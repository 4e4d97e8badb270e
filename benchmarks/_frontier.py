"""The compression report's honest selection, Pareto front, Markdown and plot (what
``benchmarks/report_compression.py`` renders, measuring and re-rendering from its record alike).

Selection: per method family and byte size the setting whose valid score is best, reported on
test (:func:`choose`); the best method within a byte budget is the valid-best of every method
that fits (:func:`best_within`); the Pareto front (:func:`pareto_front`) runs through the
chosen points' test scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.reports.bench import provenance_lines

BUDGETS = (64, 128, 256)
RESCORE = 4


def choose(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per (family, bytes) the row whose ``valid[metric]`` is best (first on ties), reported
    with its ``test`` score: the hyperparameters of a method at a size chosen on valid.

    >>> rows = [{"family": "w", "bytes": 8, "label": "a", "valid": {"s": .9}, "test": {"s": .1}},
    ...         {"family": "w", "bytes": 8, "label": "b", "valid": {"s": .5}, "test": {"s": .8}}]
    >>> [r["label"] for r in choose(rows, "s")]
    ['a']
    """
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["family"], int(r["bytes"]))
        if key not in best or r["valid"][metric] > best[key]["valid"][metric]:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r["bytes"], r["family"]))


def best_within(rows: Sequence[dict[str, Any]], budget: int, metric: str,
                skip: Callable[[dict[str, Any]], bool] = lambda r: False) -> dict[str, Any] | None:
    """The valid-best row of at most ``budget`` bytes (None if none fits)."""
    fits = [r for r in rows if r["bytes"] <= budget and not skip(r)]
    return max(fits, key=lambda r: r["valid"][metric]) if fits else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (fewer or equal bytes and higher or
    equal quality, one of them strictly), by increasing bytes.

    >>> pareto_front([(64, .5), (128, .4), (256, .7), (64, .6), (1024, .7)])
    [3, 2]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def headline(record: dict[str, Any]) -> list[tuple[str, str, int, dict[str, float]]]:
    """The closing note's rows: (what, method label, bytes, test scores) of float32, int8,
    binary, binary + rescore, and the valid-best method within each budget."""
    rows = record["retrieval"]
    by = {r["label"]: r for r in rows}
    out = [(name, label, by[label]["bytes"], by[label]["test"]) for name, label in (
        ("float32", "float32"), ("int8", "int8"), ("binary", "binary"),
        (f"binary + rescore {RESCORE}x", f"binary + rescore {RESCORE}x")) if label in by]
    for b in record["settings"]["budgets"]:
        best = best_within(rows, b, "recall@10", skip=lambda r: bool(r["method"]["rescore"]))
        if best is not None:
            out.append((f"best at <= {b} bytes", best["label"], best["bytes"], best["test"]))
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _headline_lines(record: dict[str, Any]) -> list[str]:
    rows = headline(record)
    base = next((t for name, _, _, t in rows if name == "float32"), None)
    out = [f"## Headline: {record['settings']['retrieval_task']} retrieval (test), "
           f"{record['model']['name']}", "",
           "| what | method (chosen on valid) | bytes/vector | recall@10 | % of float32 | "
           "nDCG@10 |", "|---|---|---:|---:|---:|---:|"]
    for name, label, nbytes, t in rows:
        share = f"{100 * t['recall@10'] / base['recall@10']:.1f}" if base else "-"
        out.append(f"| {name} | `{label}` | {nbytes} | {_pct(t['recall@10'])} | {share} | "
                   f"{_pct(t['ndcg@10'])} |")
    s = record.get("static")
    if s:
        model_avg = next(r["test"]["spearman"] for r in record["sts"] if r["label"] == "float32")
        out += ["", "| encoder | sentences/s (this machine) | avg test Spearman (5 STS) | "
                "LCQMC recall@10 | bytes/vector |", "|---|---:|---:|---:|---:|",
                f"| {record['model']['name']} | {s['model_sentences_per_second']:.0f} | "
                f"{_pct(model_avg)} | {_pct(base['recall@10']) if base else '-'} | "
                f"{4 * record['settings']['dim']} |",
                f"| static (distilled, {s['dim']} d) | {s['sentences_per_second']:.0f} | "
                f"{_pct(s['test_spearman_avg'])} | {_pct(s['retrieval_test']['recall@10'])} | "
                f"{s['bytes']} |", "",
                f"Speeds: one uncached `encode` call on this machine (shared; see Machine): "
                f"{record['model']['name']} on {s['model_timed_sentences']} sentences of the "
                f"retrieval task's valid corpus that the test split does not hold (no embedding "
                f"cache), the static encoder on the {s['timed_sentences']} sentences of the test "
                f"corpus; same max length, the encoders' default batch size and threads."]
    return out


def _table(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    head = " | ".join(f"valid {m} | test {m}" for m in metrics)
    out = [f"| family | bytes | chosen setting | {head} |",
           "|---|---:|---|" + "---:|---:|" * len(metrics)]
    for r in rows:
        vals = " | ".join(f"{_pct(r['valid'][m])} | {_pct(r['test'][m])}" for m in metrics)
        out.append(f"| {r['family']} | {r['bytes']} | `{r['label']}` | {vals} |")
    return out


def render(record: dict[str, Any]) -> str:
    """The report in Markdown."""
    s = record["settings"]
    m = record["model"]
    out = [f"# Compression frontier: {m['name']}", ""] + provenance_lines(record) + [
        f"- Model: `{m['name']}` (identity `{m['identity']}`), pooling {s['pooling']}, "
        f"{s['dim']} dimensions (float32: {4 * s['dim']} bytes per vector)",
        f"- STS: test Spearman averaged over {', '.join(s['tasks'])}; every chain fitted on "
        "the task's valid sentences (unique, no labels); quantised chains scored on their "
        "decoded codes (int8: cosine of the dequantised vectors, ranges fitted on the same "
        "vectors; binary: Hamming similarity; PQ: faiss ProductQuantizer, 8 bits per code, "
        "trained on the fit vectors, cosine of the reconstructions)",
        f"- Retrieval: {s['retrieval_task']} valid and test as retrieval tasks (queries the "
        "sentence1 of positive pairs, corpus every sentence2, as `make eval-lcqmc-retrieval`), "
        "graded recall@10 / nDCG@10 as `index eval`; float chains fitted on the split's corpus "
        "and queries, unit length; FAISS IndexFlatIP (float32), SQ8 (int8), PQm, "
        "IndexBinaryFlat (packed signs, Hamming), and binary with "
        f"{s['rescore']}x oversampling rescored by the float vectors (kept on disk, not counted "
        "in bytes/vector; excluded from 'best at B bytes')",
        "- Selection: per family and byte size, the setting with the best valid score (STS: "
        "average valid Spearman; retrieval: recall@10 on LCQMC valid), reported on test; "
        "the Pareto front is drawn through those chosen points' test scores",
        "- Second model (multilingual-e5-small): not run, its weights are not installed and "
        "this machine has no hub access", ""]
    out += _headline_lines(record)
    out += ["", "## STS: chosen setting per family and size (Spearman x 100)", ""]
    out += _table(choose(record["sts"], "spearman"), ["spearman"])
    out += ["", f"## {s['retrieval_task']} retrieval: chosen setting per family and size (x 100)",
            ""]
    out += _table(choose(record["retrieval"], "recall@10"), ["recall@10", "ndcg@10"])
    out += ["", "![quality vs bytes](compression-plots/frontier.png)", "",
            f"Every setting measured: {len(record['sts'])} STS rows, "
            f"{len(record['retrieval'])} retrieval rows, in the JSON record beside this file. "
            f"Total {record['timings']['seconds_total']:.0f} s.",
            "", "Indexes: the binary + rescore rows here rescore in memory (numpy), over the "
            "test split's corpus; `embedkit index build --vectors binary --rescore 4` builds the "
            "same search with the float vectors memory-mapped on disk, and "
            "`make eval-quantized-index` measures those indexes' recall against exact search, "
            "queries/s and bytes on the 75k STS test sentences.", ""]
    return "\n".join(out)


def plot(record: dict[str, Any], path: Path) -> None:
    """Quality vs bytes (log x), the chosen points per family, the Pareto front, and the
    static encoder's point: STS (left) and retrieval (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    n_sts = len(record["settings"]["tasks"])
    panels = (("sts", "spearman", f"avg test Spearman ({n_sts} STS)"),
              ("retrieval", "recall@10", f"{record['settings']['retrieval_task']} test recall@10"))
    fams = sorted({r["family"] for key, _, _ in panels for r in record[key]})
    colour = {f: plt.get_cmap("tab20")(i % 20) for i, f in enumerate(fams)}
    for ax, (key, metric, title) in zip(axes, panels, strict=True):
        rows = choose(record[key], metric)
        for fam in dict.fromkeys(r["family"] for r in rows):
            pts = [(r["bytes"], r["test"][metric]) for r in rows if r["family"] == fam]
            hollow = "rescore" in fam  # the float vectors on disk are not counted
            ax.scatter(*zip(*pts, strict=True), label=fam, s=22, color=colour[fam],
                       facecolors="none" if hollow else colour[fam])
        pts = [(r["bytes"], r["test"][metric]) for r in rows if not r["method"]["rescore"]]
        front = [pts[i] for i in pareto_front(pts)]
        ax.step(*zip(*front, strict=True), where="post", color="k", lw=1, label="Pareto front")
        st = record.get("static")
        if st:
            y = st["test_spearman_avg"] if key == "sts" else st["retrieval_test"][metric]
            ax.scatter([st["bytes"]], [y], marker="*", s=160, color="red",
                       label=f"static encoder ({st['dim']} d)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bytes per vector (log)")
        ax.set_ylabel(metric + " (test, setting chosen on valid)")
        ax.set_title(title)
        ax.grid(alpha=.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
