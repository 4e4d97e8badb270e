"""Johnson-Lindenstrauss: how far a Gaussian random projection to ``m`` dimensions distorts
distances and cosines, beside the theoretical and the practical minimum dimensions.

The JL lemma (Johnson & Lindenstrauss 1984; Dasgupta & Gupta 2003, "An elementary proof of a
theorem of Johnson and Lindenstrauss") says ``m >= 4 ln(n) / (eps^2/2 - eps^3/3)`` dimensions keep
all squared distances of ``n`` points within ``1 +- eps``
(:func:`sklearn.random_projection.johnson_lindenstrauss_min_dim`); in practice far fewer are
enough, and :func:`jl_distortion` measures it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.random_projection import GaussianRandomProjection, johnson_lindenstrauss_min_dim

from embedkit.diagnostics._common import (
    BLOCK_ROWS,
    as_matrix,
    check_seed,
    finite_block,
    random_pairs,
)
from embedkit.errors import ConfigError, check_int

#: The factor of Su Jianlin's practical estimate ``m > 8.33 ln N`` (natural logarithm).
PRACTICAL_FACTOR = 8.33


def practical_min_dim(n_vectors: int, factor: float = PRACTICAL_FACTOR) -> int:
    """``ceil(factor * ln(n_vectors))``: a practical embedding dimension for ``n_vectors`` items.

    Su Jianlin 2020, "最小熵原理（六）：词向量的维度应该怎么选择？" (The minimum
    entropy principle VI: how to choose the dimension of word vectors), kexue.fm (followed up in
    kexue.fm/archives/8711, which links it to the JL lemma's ``O(log N)``): ``n > 8.33 log N``
    with the natural logarithm (``8.33 ln 100000 = 95.9``), about 96 dimensions for 100,000
    vectors.

    >>> practical_min_dim(100_000)
    96
    """
    n = check_int(n_vectors, "n_vectors", minimum=2)
    if not float(factor) > 0:
        raise ConfigError(f"factor must be > 0; got {factor}")
    return int(math.ceil(float(factor) * math.log(n)))


def _pair_distortion(
    x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``|ratio - 1|`` of squared distances and ``|cos' - cos|`` of the pairs ``(a, b)``, skipping
    pairs at distance 0 and pairs with a zero vector respectively."""
    d0 = np.sum((x[a] - x[b]) ** 2, axis=1)
    d1 = np.sum((y[a] - y[b]) ** 2, axis=1)
    dist = np.abs(d1[d0 > 0] / d0[d0 > 0] - 1.0)

    def cos(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        den = np.linalg.norm(z[a], axis=1) * np.linalg.norm(z[b], axis=1)
        dots = np.einsum("ij,ij->i", z[a], z[b])
        return np.divide(dots, den, out=np.zeros_like(dots), where=den > 0), den > 0

    c0, ok0 = cos(x)
    c1, ok1 = cos(y)
    return dist, np.abs(c1 - c0)[ok0 & ok1]


def _stats(values: np.ndarray, prefix: str) -> dict[str, float | None]:
    if values.size == 0:
        return {f"{prefix}_max": None, f"{prefix}_p99": None, f"{prefix}_mean": None}
    return {f"{prefix}_max": float(values.max()),
            f"{prefix}_p99": float(np.percentile(values, 99)),
            f"{prefix}_mean": float(values.mean())}


def jl_distortion(
    x: ArrayLike,
    dims: Sequence[int],
    n_pairs: int = 10000,
    eps: Sequence[float] = (0.1, 0.2, 0.5),
    seed: int = 0,
    block_rows: int = BLOCK_ROWS,
) -> dict[str, Any]:
    """Measured distortion of a seeded Gaussian random projection of ``x`` to each of ``dims``.

    For each ``m`` a :class:`sklearn.random_projection.GaussianRandomProjection` (entries
    ``N(0, 1/m)``, ``random_state=seed``) maps ``n_pairs`` seeded random pairs of distinct rows;
    reported are the max, 99th percentile and mean of ``|d'^2/d^2 - 1|`` (squared Euclidean
    distances) and of ``|cos' - cos|`` (cosines). Beside them: ``jl_min_dim``, the JL bound
    ``4 ln n / (eps^2/2 - eps^3/3)`` for ``n = len(x)`` and each ``eps``
    (:func:`sklearn.random_projection.johnson_lindenstrauss_min_dim`), and ``practical_min_dim``
    (:func:`practical_min_dim`, ``ceil(8.33 ln n)``). Only the rows in the pairs are projected.

    >>> x = np.random.default_rng(0).normal(size=(200, 16))
    >>> r = jl_distortion(x, dims=[4, 256], n_pairs=500)
    >>> [p["dim"] for p in r["projections"]], r["practical_min_dim"], r["seed"]
    ([4, 256], 45, 0)
    >>> r["projections"][0]["distance_p99"] > r["projections"][1]["distance_p99"]
    True
    """
    arr = as_matrix(x, min_rows=2)
    n_pairs, seed = check_int(n_pairs, "n_pairs"), check_seed(seed)
    ms = [check_int(m, "each entry of dims", param="dims") for m in dims]
    if not ms:
        raise ConfigError("dims must list at least one target dimension")
    if any(not 0.0 < float(e) < 1.0 for e in eps):
        raise ConfigError(f"each eps must be in (0, 1); got {list(eps)}")
    i, j = random_pairs(arr.shape[0], n_pairs, seed)
    rows, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
    a, b = inverse[:n_pairs], inverse[n_pairs:]
    sub = finite_block(arr[rows], "x", 0, rows)
    step = check_int(block_rows, "block_rows")
    projections = []
    for m in ms:
        with warnings.catch_warnings():  # m > dim is allowed: it only measures the distortion
            warnings.simplefilter("ignore")
            y = GaussianRandomProjection(n_components=m, random_state=seed).fit(sub).transform(sub)
        parts = [_pair_distortion(sub, y, a[s:s + step], b[s:s + step])
                 for s in range(0, n_pairs, step)]
        dist = np.concatenate([p[0] for p in parts])
        cos = np.concatenate([p[1] for p in parts])
        projections.append({"dim": m, **_stats(dist, "distance"), **_stats(cos, "cosine")})
    n = int(arr.shape[0])
    return {
        "n_vectors": n, "dim": int(arr.shape[1]), "n_pairs": n_pairs, "seed": seed,
        "projections": projections,
        "jl_min_dim": [{"eps": float(e), "min_dim": int(johnson_lindenstrauss_min_dim(n, eps=e))}
                       for e in eps],
        "practical_min_dim": practical_min_dim(n),
    }
