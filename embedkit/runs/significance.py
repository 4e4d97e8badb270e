"""Is the difference between two rows on the same data more than noise? A paired bootstrap
over the per-pair scores of the predictions files ``bench`` writes (its predictions option).

``a`` and ``b`` are two predictions files, or two row folders (``DIR/<row>``) whose
``<task>/<split>`` files are matched by name. The pairs must be the same (same positions and
labels); the same resampled pairs score both rows
(:func:`~embedkit.evaluation.bootstrap.paired_bootstrap`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embedkit.aliases import StrPath
from embedkit.errors import ConfigError
from embedkit.evaluation.bootstrap import paired_bootstrap
from embedkit.evaluation.metrics import spearman
from embedkit.runs.predictions import read_predictions

__all__ = ["SUFFIXES", "compare_predictions"]

#: the predictions file formats, by suffix
SUFFIXES = (".jsonl", ".parquet")


def _matched_files(a: StrPath, b: StrPath) -> list[tuple[str, Path, Path]]:
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
                if f.suffix in SUFFIXES}

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


def compare_predictions(a: StrPath, b: StrPath, *, n_resamples: int = 1000,
                        seed: int = 0) -> list[dict[str, Any]]:
    """One result per shared task/split: both Spearman values, the difference a - b, its
    interval, p-value and ``significant``."""
    out = []
    for name, fa, fb in _matched_files(a, b):
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
