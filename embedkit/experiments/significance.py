"""Is the difference between two rows on the same data more than noise? A paired bootstrap
over the per-pair scores of the predictions files ``bench`` writes (its predictions option).

``a`` and ``b`` are two predictions files, or two row folders (``DIR/<row>``) whose
``<task>/<split>`` files are matched by name. The pairs must be the same (same positions and
labels); the same resampled pairs score both rows
(:func:`~embedkit.evaluation.bootstrap.paired_bootstrap`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.evaluation.bootstrap import paired_bootstrap
from embedkit.evaluation.metrics import spearman
from embedkit.experiments.predictions import read_predictions
from embedkit.io.tables import text_table

__all__ = ["compare_predictions", "format_significance", "histogram_plots", "matched_files"]

_SUFFIXES = (".jsonl", ".parquet")


def matched_files(a: str | os.PathLike, b: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(task/split, file of a, file of b)`` for every predictions file the two share."""
    pa, pb = Path(a), Path(b)
    for p in (pa, pb):
        if not p.exists():
            raise ConfigError(f"{p}: no such predictions file or folder", param="paired")
    if pa.is_file() and pb.is_file():
        return [(f"{pa.parent.name}/{pa.stem}", pa, pb)]
    if pa.is_file() or pb.is_file():
        raise ConfigError("give two predictions files or two row folders", param="paired")

    def files(root: Path) -> dict[str, Path]:
        return {f"{f.parent.name}/{f.stem}": f for f in sorted(root.glob("*/*"))
                if f.suffix in _SUFFIXES}

    fa, fb = files(pa), files(pb)
    common = [k for k in fa if k in fb]
    if not common:
        raise ConfigError(f"{pa} and {pb} share no <task>/<split> predictions file",
                          param="paired")
    return [(k, fa[k], fb[k]) for k in common]


def _columns(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = read_predictions(path)
    missing = [c for c in ("i", "label", "cosine") if c not in cols]
    if missing:
        raise ConfigError(f"{path}: not a bench predictions file (no {', '.join(missing)} "
                          "column)", param="paired")
    order = np.argsort(np.asarray(cols["i"]))
    return (np.asarray(cols["i"])[order], np.asarray(cols["label"], dtype=float)[order],
            np.asarray(cols["cosine"], dtype=float)[order])


def compare_predictions(a: str | os.PathLike, b: str | os.PathLike, *, n_resamples: int = 1000,
                        seed: int = 0) -> list[dict[str, Any]]:
    """One result per shared task/split: both Spearman values, the difference a - b, its
    interval, p-value and ``significant``."""
    out = []
    for name, fa, fb in matched_files(a, b):
        ia, ya, xa = _columns(fa)
        ib, yb, xb = _columns(fb)
        if not (np.array_equal(ia, ib) and np.array_equal(ya, yb)):
            raise ConfigError(f"{fa} and {fb} do not hold the same pairs (positions or labels "
                              "differ); a paired comparison needs the same data",
                              param="paired")
        res = paired_bootstrap("spearman", xa, xb, ya, n_resamples=n_resamples, seed=seed)
        out.append({"task_split": name, "a": str(fa), "b": str(fb), "metric": "spearman",
                    "value_a": spearman(xa, ya), "value_b": spearman(xb, yb),
                    "n_pairs": len(ya), **res})
    return out


def format_significance(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """``task/split  a  b  a-b  95% interval  p  significant`` (values x 100)."""
    header = ["task/split", "a", "b", "a - b", "95% interval", "p", "significant"]
    body = [[r["task_split"], f"{100 * r['value_a']:.2f}", f"{100 * r['value_b']:.2f}",
             f"{100 * r['diff']:+.2f}", f"[{100 * r['low']:+.2f}, {100 * r['high']:+.2f}]",
             f"{r['p_value']:.3f}", "yes" if r["significant"] else "no (noise)"]
            for r in rows]
    return text_table(header, body, markdown=markdown)


def histogram_plots(record: dict[str, Any], pred_dir: str | os.PathLike,
                    out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per binary task/split of a bench record (``OUT/<task>_<split>.png``): the
    cosine histograms by label of every row, read from the predictions files under
    ``pred_dir``, with each row's calibrated threshold (bench's classify option)."""
    from embedkit.diagnostics.plots import plot_cosine_histograms
    from embedkit.experiments.predictions import row_folder

    out: list[Path] = []
    results = record["results"]
    first = next(iter(results.values()))
    for task, splits in first.items():
        if not isinstance(splits, dict) or task == "avg":
            continue
        for split in (s for s, v in splits.items() if isinstance(v, dict) and "spearman" in v):
            panels = {}
            for label, res in results.items():
                base = Path(pred_dir) / row_folder(label) / task
                f = next((base / f"{split}{x}" for x in _SUFFIXES
                          if (base / f"{split}{x}").is_file()), None)
                if f is None:
                    continue
                cols = read_predictions(f)
                c = ((res[task][split].get("classification") or {}).get("cosine") or {})
                panels[label] = (cols["cosine"], cols["label"], c.get("accuracy_threshold"))
            if panels and set(np.unique(next(iter(panels.values()))[1])) <= {0, 1}:
                path = Path(out_dir) / f"{task}_{split}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                out.append(plot_cosine_histograms(path, f"{task}/{split}: cosine by label",
                                                  panels))
    return out
