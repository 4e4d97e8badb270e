"""Sparsity of embedding vectors and of their covariance spectrum.

Two scale-invariant measures of a vector ``v`` in ``R^d``: the ratio
``||v||_1 / (sqrt(d) ||v||_2)``, in ``[1/sqrt(d), 1]`` (``1/sqrt(d)`` for a one-hot vector, 1
for a constant one), and Hoyer's sparseness ``(sqrt(d) - ||v||_1/||v||_2) / (sqrt(d) - 1)``, in
``[0, 1]`` (1 for one-hot, 0 for constant). Applied to the eigenvalue spectrum they tell how
concentrated the variance is in few directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.diagnostics._common import BLOCK_ROWS, check_matrix, row_blocks, summary
from embedkit.diagnostics.spectrum import covariance_eigenvalues
from embedkit.errors import ConfigError


def _last_axis(v: ArrayLike) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] < 1:
        raise ConfigError(f"expected a vector or a 2-D array of row vectors; got shape {arr.shape}")
    return arr


def l1_l2_ratio(v: ArrayLike) -> np.ndarray:
    """``||v||_1 / (sqrt(d) ||v||_2)`` of a vector (0-d result) or of every row of a 2-D array.

    The normalised l1/l2 ratio of Hurley & Rickard 2009, "Comparing measures of sparsity"
    (IEEE Trans. Inf. Theory 55): ``1/sqrt(d)`` for a one-hot vector, 1 for a constant
    vector; NaN for a zero vector.

    >>> float(l1_l2_ratio([0.0, 0.0, 0.0, 5.0]))
    0.5
    >>> l1_l2_ratio([[1.0, 1.0], [-2.0, 2.0]]).round(12).tolist()
    [1.0, 1.0]
    """
    arr = _last_axis(v)
    l1 = np.abs(arr).sum(axis=-1)
    l2 = np.linalg.norm(arr, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(l2 > 0, l1 / (np.sqrt(arr.shape[-1]) * l2), np.nan))


def hoyer(v: ArrayLike) -> np.ndarray:
    """Hoyer's sparseness of a vector (0-d result) or of every row of a 2-D array.

    Hoyer 2004, "Non-negative matrix factorization with sparseness constraints" (JMLR 5),
    eq. 1: ``(sqrt(d) - ||v||_1 / ||v||_2) / (sqrt(d) - 1)``; 1 for a one-hot vector, 0 for a
    constant vector, NaN for a zero vector. Needs ``d >= 2``.

    >>> float(hoyer([0.0, 0.0, 3.0, 0.0])), float(hoyer([2.0, 2.0, 2.0, 2.0]))
    (1.0, 0.0)
    """
    arr = _last_axis(v)
    d = arr.shape[-1]
    if d < 2:
        raise ConfigError("Hoyer's sparseness needs vectors of dimension >= 2; got 1")
    root = np.sqrt(d)
    l1 = np.abs(arr).sum(axis=-1)
    l2 = np.linalg.norm(arr, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(l2 > 0, (root - l1 / l2) / (root - 1.0), np.nan)
    return np.asarray(np.clip(value, 0.0, 1.0))


def sparsity(x: ArrayLike, block_rows: int = BLOCK_ROWS) -> dict[str, Any]:
    """The l1/l2 ratio and Hoyer sparseness of every row of ``x`` and of its spectrum.

    ``vectors`` holds :func:`l1_l2_ratio` and :func:`hoyer` summarised over the non-zero rows
    (mean, std, min, quartiles, max; None when every row is zero) and ``n_zero_vectors``;
    ``spectrum`` holds the same two measures of the covariance eigenvalue vector
    (:func:`~embedkit.diagnostics.spectrum.covariance_eigenvalues`; None when the covariance is
    zero or ``x`` has one row). Rows are processed ``block_rows`` at a time.

    >>> x = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -2.0, 0.0]])
    >>> s = sparsity(x)
    >>> s["vectors"]["hoyer"]["mean"], s["vectors"]["l1_l2_ratio"]["mean"]
    (1.0, 0.5)
    """
    arr = check_matrix(x)
    if arr.shape[1] < 2:
        raise ConfigError("sparsity needs vectors of dimension >= 2; got 1")
    ratios, hoyers = [], []
    for _, block in row_blocks(arr, block_rows):
        ratios.append(l1_l2_ratio(block))
        hoyers.append(hoyer(block))
    ratio, hoy = np.concatenate(ratios), np.concatenate(hoyers)
    nonzero = ~np.isnan(ratio)
    vectors: dict[str, Any] = {
        "l1_l2_ratio": summary(ratio[nonzero]) if nonzero.any() else None,
        "hoyer": summary(hoy[nonzero]) if nonzero.any() else None,
        "n_zero_vectors": int((~nonzero).sum()),
    }
    spec: dict[str, Any] = {"l1_l2_ratio": None, "hoyer": None}
    if arr.shape[0] >= 2:
        eig = covariance_eigenvalues(arr, block_rows)
        if eig.sum() > 0:
            spec = {"l1_l2_ratio": float(l1_l2_ratio(eig)), "hoyer": float(hoyer(eig))}
    return {"vectors": vectors, "spectrum": spec, "n_vectors": int(arr.shape[0]),
            "dim": int(arr.shape[1])}
