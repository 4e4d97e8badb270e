"""Cosine similarity and rank correlations, computed as the published STS numbers are.

Spearman and Pearson are scipy's (``scipy.stats.spearmanr``: ties get average ranks, which
matters with binary labels; ``pearsonr``), computed as scipy computes them in numpy (importing
``scipy.stats`` takes about a second, most of a short run's start-up); cosine is
taken in float64 on L2-normalised vectors; a zero vector has cosine 0 with everything. A model
folder may declare another similarity (sentence-transformers' ``similarity_fn_name``: dot,
euclidean, manhattan), scored as sentence-transformers does (:func:`similarity_scores`).

>>> import numpy as np
>>> a = np.array([[1.0, 0.0], [0.0, 2.0]]); b = np.array([[1.0, 1.0], [0.0, 1.0]])
>>> np.round(cosine_scores(a, b), 4).tolist()
[0.7071, 1.0]
>>> round(spearman([1, 2, 3], [0, 0, 1]), 4)
0.866
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.encoders.st_folder import SIMILARITIES
from embedkit.errors import ConfigError


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(np.divide(x, norms, out=np.zeros_like(x), where=norms > 0))


#: Cosines are rounded to this many decimals before ranking. A cosine computed in float64 from
#: float32 vectors carries no information at 1e-12, but its last bits depend on the order of
#: operations: the 74 identical-sentence pairs of PAWSX test come out as 13 different values
#: within 1e-15 of 1, and scipy would then break their ties by rounding noise, moving Spearman
#: by 0.03 points between two computations that are equal in exact arithmetic (e.g. raw vectors
#: and their rotation). Rounding makes equal cosines tie, as the average-rank rule intends.
_COSINE_DECIMALS = 12


def quantize_cosines(cos: np.ndarray) -> np.ndarray:
    """Round cosines to :data:`_COSINE_DECIMALS` so that float noise cannot break ties.

    >>> quantize_cosines(np.array([1 - 2e-16, 1.0, 0.5 + 1e-15])).tolist()
    [1.0, 1.0, 0.5]
    """
    return np.round(np.asarray(cos, dtype=np.float64), _COSINE_DECIMALS)


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays (see :data:`_COSINE_DECIMALS`)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return quantize_cosines(np.einsum("ij,ij->i", l2_normalize(a), l2_normalize(b)))


def hamming_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming similarity ``1 - hamming / d``: the fraction of coordinates where two
    (n, d) arrays agree (of sign vectors: the bits a binary quantiser keeps).

    >>> hamming_scores(np.array([[1, -1, 1, 1]]), np.array([[1, 1, 1, -1]])).tolist()
    [0.5]
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.shape[1] == 0:
        return np.ones(a.shape[0])
    return np.asarray(1.0 - np.count_nonzero(np.asarray(a) != np.asarray(b), axis=1) / a.shape[1])


def similarity_scores(a: np.ndarray, b: np.ndarray, similarity: str = "cosine") -> np.ndarray:
    """Row-wise similarity of two (n, d) arrays in float64: ``cosine`` (:func:`cosine_scores`),
    ``hamming`` (:func:`hamming_scores`, a binary quantiser's), ``dot``, or the negated ``euclidean`` / ``manhattan`` distance (higher is more similar, as
    sentence-transformers scores them). Rounded so that float noise cannot break ties (the
    others relative to their largest magnitude, as :data:`_COSINE_DECIMALS` for cosine).

    >>> a = np.array([[1.0, 0.0]]); b = np.array([[3.0, 4.0]])
    >>> [similarity_scores(a, b, s).tolist() for s in ("cosine", "dot", "euclidean", "manhattan")]
    [[0.6], [3.0], [-4.47213595499958], [-6.0]]
    """
    if similarity == "cosine":
        return cosine_scores(a, b)
    if similarity == "hamming":
        return hamming_scores(a, b)
    if similarity not in SIMILARITIES:
        raise ConfigError(f"unknown similarity {similarity!r}; valid: {', '.join(SIMILARITIES)}",
                          param="similarity")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if similarity == "dot":
        out = np.einsum("ij,ij->i", x, y)
    elif similarity == "euclidean":
        out = -np.linalg.norm(x - y, axis=1)
    else:
        out = -np.abs(x - y).sum(axis=1)
    scale = float(np.abs(out).max(initial=0.0)) or 1.0
    return np.asarray(np.round(out / scale, _COSINE_DECIMALS) * scale)


def _corr(fn: Callable[[np.ndarray, np.ndarray], float], x: ArrayLike, y: ArrayLike) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")  # undefined for constant input; reported as NaN, never a warning
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")  # as scipy propagates NaN
    return fn(x, y)


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (``scipy.stats.rankdata``'s ``average``).

    >>> average_ranks(np.array([10.0, 20.0, 10.0, 5.0])).tolist()
    [2.5, 4.0, 2.5, 1.0]
    """
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size, dtype=np.intp)
    ordered = a[sorter]
    obs = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = obs.cumsum()[inv]
    count = np.r_[np.nonzero(obs)[0], len(obs)]
    return np.asarray(0.5 * (count[dense] + count[dense - 1] + 1), dtype=np.float64)


def _pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's ``pearsonr`` statistic: centred, each scaled by its largest value before its
    norm (no overflow), the dot product clipped to [-1, 1]."""
    xm, ym = x - x.mean(), y - y.mean()
    xmax, ymax = np.abs(xm).max(), np.abs(ym).max()
    normxm = xmax * np.linalg.norm(xm / xmax)
    normym = ymax * np.linalg.norm(ym / ymax)
    return float(np.clip(np.dot(xm / normxm, ym / normym), -1.0, 1.0))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rho with average ranks for ties (``scipy.stats.spearmanr``)."""
    return _corr(lambda a, b: _pearson_r(average_ranks(a), average_ranks(b)), x, y)


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson's r (``scipy.stats.pearsonr``)."""
    return _corr(_pearson_r, x, y)


def _undefined_reason(scores: ArrayLike, labels: ArrayLike,
                      what: str = "cosine similarities") -> str | None:
    """Why a rank correlation of ``scores`` against ``labels`` is undefined (NaN), or None.

    >>> _undefined_reason([0.1, 0.2], [1, 1]), _undefined_reason([0.5, 0.5], [0, 1])
    ('constant labels', 'constant cosine similarities')
    >>> _undefined_reason([0.1, 0.2], [0, 1]) is None
    True
    """
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(x) < 2:
        return f"{len(x)} pair{'s' if len(x) != 1 else ''}; a correlation needs at least 2"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return f"non-finite {what} or labels"
    if np.all(y == y[0]):
        return "constant labels"
    if np.all(x == x[0]):
        return f"constant {what}"
    return None


def pair_scores(emb1: np.ndarray, emb2: np.ndarray, labels: ArrayLike,
                similarity: str = "cosine") -> dict[str, Any]:
    """Spearman and Pearson between the pairs' similarities (cosine unless the model declares
    another, :func:`similarity_scores`) and their labels; when they are undefined (NaN),
    ``"undefined"`` says why (constant labels or similarities)."""
    cos = similarity_scores(emb1, emb2, similarity)
    out: dict[str, Any] = {"spearman": spearman(cos, labels), "pearson": pearson(cos, labels),
                           "n_pairs": int(len(cos))}
    reason = _undefined_reason(cos, labels, f"{similarity} similarities")
    if reason is not None or np.isnan(out["spearman"]):
        out.update(spearman=float("nan"), pearson=float("nan"), undefined=reason or "undefined")
    return out
