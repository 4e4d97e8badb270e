"""Bootstrap intervals over pairs, and the paired bootstrap that says whether two rows differ.

Pairs are resampled with replacement ``n_resamples`` times (seeded) as one (B, n) index
matrix; each statistic is computed for all resamples at once (Spearman: average ranks of
every row with one ``scipy.stats.rankdata(axis=1)``, then a row-wise Pearson), in blocks so
that memory stays bounded. The interval is the percentile interval (2.5 and 97.5 percentiles
for 95 %). The paired bootstrap resamples the same pairs for both rows and reports the
interval of the difference; the difference is significant when that interval excludes 0.

>>> rng = np.random.default_rng(0); y = rng.normal(size=300); x = y + rng.normal(size=300)
>>> ci = bootstrap_interval("spearman", x, y, n_resamples=200, seed=0)
>>> round(ci["low"], 2) < round(ci["value"], 2) < round(ci["high"], 2)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embedkit.errors import ConfigError
from embedkit.evaluation.classification import average_precision
from embedkit.evaluation.metrics import quantize_cosines, spearman

__all__ = ["METHOD", "STATISTICS", "bootstrap_interval", "paired_bootstrap",
           "resample_indices"]

METHOD = "percentile bootstrap over pairs"
_BLOCK = 200  # resamples computed at once


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.sum(a * b, axis=1)
                          / np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1)))


def _spearman_rows(x: np.ndarray, y: np.ndarray, **_: Any) -> np.ndarray:
    from scipy.stats import rankdata

    return _row_pearson(rankdata(x, axis=1), rankdata(y, axis=1))


def _accuracy_rows(x: np.ndarray, y: np.ndarray, threshold: float | None = None,
                   high: bool = True, **_: Any) -> np.ndarray:
    if threshold is None:
        raise ConfigError("an accuracy interval needs the threshold", param="threshold")
    pred = x > threshold if high else x < threshold
    return np.asarray(np.mean(pred == (y == 1), axis=1))


def _ap_rows(x: np.ndarray, y: np.ndarray, high: bool = True, **_: Any) -> np.ndarray:
    return np.asarray(average_precision(x, y, high))


#: statistic name -> f(scores (B, n), labels (B, n), **options) -> (B,)
STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "spearman": _spearman_rows, "accuracy": _accuracy_rows, "ap": _ap_rows}


def _full(name: str, x: np.ndarray, y: np.ndarray, **options: Any) -> float:
    if name == "spearman":
        return spearman(x, y)
    return float(STATISTICS[name](x[None, :], y[None, :], **options)[0])


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """A (B, n) matrix of pair indices drawn with replacement (seeded)."""
    if n < 2 or n_resamples < 1:
        raise ConfigError(f"a bootstrap needs >= 2 pairs and >= 1 resample (got {n} and "
                          f"{n_resamples})", param="ci")
    return np.random.default_rng(seed).integers(0, n, size=(int(n_resamples), int(n)))


def _stats(name: str, idx: np.ndarray, x: np.ndarray, y: np.ndarray, **options: Any
           ) -> np.ndarray:
    fn = STATISTICS[name]
    return np.concatenate([fn(x[idx[i:i + _BLOCK]], y[idx[i:i + _BLOCK]], **options)
                           for i in range(0, len(idx), _BLOCK)])


def _check(name: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if name not in STATISTICS:
        raise ConfigError(f"no bootstrap for {name!r}; one of {', '.join(STATISTICS)}")
    x, y = quantize_cosines(np.asarray(x, dtype=np.float64)), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"scores and labels must be two lists of one length, got {x.shape} "
                          f"and {y.shape}")
    return x, y


def bootstrap_interval(name: str, scores: Any, labels: Any, *, n_resamples: int = 1000,
                       seed: int = 0, level: float = 0.95, **options: Any) -> dict[str, Any]:
    """``{"value", "low", "high", "level", "method", "n_resamples", "seed"}`` of statistic
    ``name`` (spearman, accuracy at ``threshold``, ap) over resampled pairs."""
    x, y = _check(name, scores, labels)
    vals = _stats(name, resample_indices(len(x), n_resamples, seed), x, y, **options)
    lo, hi = np.nanpercentile(vals, [50 * (1 - level), 50 * (1 + level)])
    return {"value": _full(name, x, y, **options), "low": float(lo), "high": float(hi),
            "level": level, "method": METHOD, "n_resamples": int(n_resamples), "seed": seed}


def paired_bootstrap(name: str, scores_a: Any, scores_b: Any, labels: Any, *,
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                     **options: Any) -> dict[str, Any]:
    """The difference ``a - b`` of statistic ``name`` on the same pairs, with the interval of
    the difference over the same resampled pairs for both, ``p_value`` (two-sided: twice the
    share of resamples on the other side of 0) and ``significant`` (the interval excludes 0)."""
    xa, y = _check(name, scores_a, labels)
    xb, _ = _check(name, scores_b, labels)
    idx = resample_indices(len(y), n_resamples, seed)
    diff = _stats(name, idx, xa, y, **options) - _stats(name, idx, xb, y, **options)
    lo, hi = np.nanpercentile(diff, [50 * (1 - level), 50 * (1 + level)])
    value = _full(name, xa, y, **options) - _full(name, xb, y, **options)
    side = np.mean(diff <= 0) if value > 0 else np.mean(diff >= 0)
    return {"diff": float(value), "low": float(lo), "high": float(hi), "level": level,
            "p_value": float(min(1.0, 2 * side)), "significant": bool(lo > 0 or hi < 0),
            "method": "paired " + METHOD, "n_resamples": int(n_resamples), "seed": seed}
