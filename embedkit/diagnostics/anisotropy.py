"""Anisotropy: how much an embedding set crowds into a narrow cone.

Two numbers: the mean cosine similarity of random pairs of distinct vectors (Ethayarajh 2019),
which is ~0 for an isotropic set and near 1 when all vectors share a common direction, and the
norm of the mean vector relative to the mean norm, ``||mean(x)|| / mean(||x||)``, which is 0 for
a centred set and 1 when all vectors are equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.diagnostics._common import (
    BLOCK_ROWS,
    as_matrix,
    check_seed,
    finite_block,
    random_pairs,
    row_blocks,
)
from embedkit.errors import ConfigError, check_int


def pair_cosines(
    x: ArrayLike, i: ArrayLike, j: ArrayLike, block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """Cosine similarity of rows ``x[i[t]]`` and ``x[j[t]]`` for every t, in float64.

    ``cos(a, b) = <a, b> / (||a|| ||b||)``; a pair with a zero vector has cosine 0. Pairs are
    processed ``block_rows`` at a time.

    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    >>> pair_cosines(x, [0, 0], [1, 2]).tolist()
    [0.0, -1.0]
    """
    arr = as_matrix(x)
    ii, jj = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    if ii.shape != jj.shape or ii.ndim != 1:
        raise ConfigError(f"i and j must be 1-D index arrays of one length; got shapes "
                          f"{ii.shape} and {jj.shape}")
    if ii.size and (min(ii.min(), jj.min()) < 0 or max(ii.max(), jj.max()) >= arr.shape[0]):
        raise ConfigError(f"i and j must be row indices in [0, {arr.shape[0]})")
    step = check_int(block_rows, "block_rows")
    out = np.empty(ii.shape[0], dtype=np.float64)
    for s in range(0, ii.shape[0], step):
        a = finite_block(arr[ii[s:s + step]], "x", 0, ii[s:s + step])
        b = finite_block(arr[jj[s:s + step]], "x", 0, jj[s:s + step])
        den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        dots = np.einsum("ij,ij->i", a, b)
        out[s:s + step] = np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)
    return np.clip(out, -1.0, 1.0)


def mean_vector_norm_ratio(x: ArrayLike, block_rows: int = BLOCK_ROWS) -> float:
    """``||mean(x)|| / mean(||x||)``: 0 for a centred set, 1 when all rows are equal.

    By the triangle inequality the ratio lies in [0, 1]; it is the norm of the common
    component relative to the typical vector length (the "common direction" of
    Mu & Viswanath 2018, "All-but-the-top"). A set of zero vectors gives 0.

    >>> mean_vector_norm_ratio(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    0.0
    >>> mean_vector_norm_ratio(np.array([[3.0, 4.0], [3.0, 4.0]]))
    1.0
    """
    arr = as_matrix(x)
    total = np.zeros(arr.shape[1], dtype=np.float64)
    norm_sum = 0.0
    for _, block in row_blocks(arr, block_rows):
        total += block.sum(axis=0)
        norm_sum += float(np.linalg.norm(block, axis=1).sum())
    if norm_sum == 0.0:
        return 0.0
    return min(float(np.linalg.norm(total)) / norm_sum, 1.0)


def anisotropy(
    x: ArrayLike, n_pairs: int = 10000, seed: int = 0, block_rows: int = BLOCK_ROWS
) -> dict[str, Any]:
    """Mean cosine of random distinct pairs and the mean-vector norm ratio of ``x``.

    ``mean_cosine = (1/P) sum_t cos(x_{i_t}, x_{j_t})`` over ``P = n_pairs`` pairs drawn
    uniformly with replacement with ``i_t != j_t`` (``numpy.random.default_rng(seed)``): the
    anisotropy baseline of Ethayarajh 2019, "How contextual are contextualized word
    representations?" (EMNLP). ``mean_vector_norm_ratio`` is
    ``||mean(x)|| / mean(||x||)`` (see :func:`mean_vector_norm_ratio`).

    Returns a JSON-ready dict: ``mean_cosine``, ``std_cosine``, ``mean_vector_norm_ratio``,
    ``n_vectors``, ``n_pairs`` and ``seed``.

    >>> x = np.tile([1.0, 2.0, 2.0], (5, 1))
    >>> r = anisotropy(x, n_pairs=100)
    >>> round(r["mean_cosine"], 6), round(r["mean_vector_norm_ratio"], 6), r["seed"]
    (1.0, 1.0, 0)
    """
    arr = as_matrix(x, min_rows=2)
    n_pairs = check_int(n_pairs, "n_pairs")
    seed = check_seed(seed)
    i, j = random_pairs(arr.shape[0], n_pairs, seed)
    cos = pair_cosines(arr, i, j, block_rows)
    return {
        "mean_cosine": float(cos.mean()),
        "std_cosine": float(cos.std()),
        "mean_vector_norm_ratio": mean_vector_norm_ratio(arr, block_rows),
        "n_vectors": int(arr.shape[0]),
        "n_pairs": n_pairs,
        "seed": seed,
    }
