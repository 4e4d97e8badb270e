"""The covariance spectrum of an embedding set: eigenvalues, explained variance, effective rank
and IsoScore.

The covariance is accumulated block by block (a ``d x d`` matrix, never ``n x n``); everything
else is a function of its eigenvalues ``lambda_1 >= ... >= lambda_d >= 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.diagnostics._common import BLOCK_ROWS, check_matrix, column_mean, row_blocks
from embedkit.errors import ConfigError

#: Shares of the total variance for which :func:`spectrum` reports the number of dimensions.
_VARIANCE_LEVELS = (0.9, 0.95, 0.99)


def covariance_eigenvalues(x: ArrayLike, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Eigenvalues of the sample covariance of ``x`` (ddof=1), in descending order.

    ``C = (1/(n-1)) sum_i (x_i - mu)(x_i - mu)^T``, accumulated over row blocks after a first
    pass for ``mu`` (two passes keep the centring exact for sets far from the origin); the same
    as ``np.linalg.eigvalsh(np.cov(x, rowvar=False))`` reversed. Round-off negatives are set to 0.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    >>> covariance_eigenvalues(x).round(6).tolist()
    [2.666667, 0.666667]
    """
    arr = check_matrix(x, min_rows=2)
    mu = column_mean(arr, block_rows)
    scatter = np.zeros((arr.shape[1], arr.shape[1]), dtype=np.float64)
    for _, block in row_blocks(arr, block_rows):
        centred = block - mu
        scatter += centred.T @ centred
    eig = np.linalg.eigvalsh(scatter / (arr.shape[0] - 1))[::-1]
    return np.clip(eig, 0.0, None)


def _eigenvalues(values: ArrayLike) -> np.ndarray:
    """A 1-D non-negative eigenvalue vector with a positive sum, or a ConfigError."""
    eig = np.asarray(values, dtype=np.float64)
    if eig.ndim != 1 or eig.size == 0:
        raise ConfigError(f"eigenvalues must be a non-empty 1-D array; got shape {eig.shape}")
    if not np.isfinite(eig).all() or (eig < 0).any():
        raise ConfigError("eigenvalues must be finite and >= 0 (a covariance spectrum)")
    if eig.sum() <= 0:
        raise ConfigError("the covariance is zero (all vectors are identical); the spectrum "
                          "diagnostics need at least two distinct vectors")
    return eig


def effective_rank_from_eigenvalues(eigenvalues: ArrayLike) -> float:
    """Effective rank from covariance eigenvalues, via the singular values of the centred data.

    Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality" (EUSIPCO):
    ``erank = exp(H(p))``, ``H(p) = -sum_i p_i ln p_i``, ``p_i = s_i / sum_j s_j``, where ``s_i``
    are the singular values of the centred data matrix, ``s_i = sqrt((n-1) lambda_i)`` (so
    ``p_i`` is proportional to ``sqrt(lambda_i)``). It lies in ``[1, d]``: 1 for rank one,
    ``d`` when all eigenvalues are equal.

    >>> effective_rank_from_eigenvalues([4.0, 4.0, 4.0, 4.0])
    4.0
    >>> effective_rank_from_eigenvalues([9.0, 0.0, 0.0])
    1.0
    """
    s = np.sqrt(_eigenvalues(eigenvalues))
    p = s[s > 0] / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(x: ArrayLike, block_rows: int = BLOCK_ROWS) -> float:
    """Effective rank (Roy & Vetterli 2007) of the centred data ``x``; see
    :func:`effective_rank_from_eigenvalues` for the formula.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> round(effective_rank(x), 6)
    2.0
    """
    return effective_rank_from_eigenvalues(covariance_eigenvalues(x, block_rows))


def isoscore_from_eigenvalues(eigenvalues: ArrayLike) -> float:
    """IsoScore from the covariance eigenvalues (the variances after PCA reorientation).

    Rudman, Gillman, Rayne & Eickhoff 2022, "IsoScore: Measuring the Uniformity of Embedding
    Space Utilization" (Findings of ACL), Algorithm 1: after PCA the covariance is diagonal with
    the eigenvalues as its variance vector ``Sigma`` (steps 2-3); normalise it to norm
    ``sqrt(d)``: ``Sigma_D = sqrt(d) Sigma / ||Sigma||`` (step 4); the isotropy defect is
    ``delta = ||Sigma_D - 1|| / sqrt(2 (d - sqrt(d)))`` (step 5); ``phi = (d - delta^2
    (d - sqrt(d)))^2 / d^2`` is the share of dimensions used (step 6) and
    ``IsoScore = (d phi - 1) / (d - 1)`` (step 7). It is 1 for equal variances and 0 for
    variance in one direction only. Needs ``d >= 2``.

    >>> isoscore_from_eigenvalues([2.0, 2.0, 2.0])
    1.0
    >>> isoscore_from_eigenvalues([5.0, 0.0, 0.0])
    0.0
    """
    eig = _eigenvalues(eigenvalues)
    d = eig.size
    if d < 2:
        raise ConfigError("IsoScore needs at least 2 dimensions; got 1")
    sigma_d = np.sqrt(d) * eig / np.linalg.norm(eig)
    delta = np.linalg.norm(sigma_d - 1.0) / np.sqrt(2.0 * (d - np.sqrt(d)))
    phi = (d - delta**2 * (d - np.sqrt(d))) ** 2 / d**2
    score = (d * phi - 1.0) / (d - 1.0)
    return float(np.clip(round(score, 12), 0.0, 1.0)) + 0.0  # + 0.0 turns -0.0 into 0.0


def isoscore(x: ArrayLike, block_rows: int = BLOCK_ROWS) -> float:
    """IsoScore (Rudman et al. 2022) of ``x``; see :func:`isoscore_from_eigenvalues`.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> isoscore(x)
    1.0
    """
    return isoscore_from_eigenvalues(covariance_eigenvalues(x, block_rows))


def dims_for_variance(eigenvalues: ArrayLike, level: float) -> int:
    """The fewest leading components whose eigenvalues hold ``level`` of the total variance.

    ``min { m : sum_{i<=m} lambda_i >= level * sum_i lambda_i }`` (eigenvalues sorted
    descending), the usual PCA cut-off (Jolliffe 2002, "Principal Component Analysis", 6.1.1).

    >>> dims_for_variance([5.0, 3.0, 1.0, 1.0], 0.8)
    2
    """
    if not 0.0 < float(level) <= 1.0:
        raise ConfigError(f"variance level must be in (0, 1]; got {level}")
    eig = np.sort(_eigenvalues(eigenvalues))[::-1]
    cumulative = np.cumsum(eig) / eig.sum()
    m = int(np.searchsorted(cumulative, float(level) - 1e-12)) + 1
    return min(m, eig.size)


def spectrum(
    x: ArrayLike, levels: Sequence[float] = _VARIANCE_LEVELS, block_rows: int = BLOCK_ROWS
) -> dict[str, Any]:
    """The covariance spectrum of ``x`` and the numbers derived from it, as a JSON-ready dict.

    Keys: ``eigenvalues`` (descending, :func:`covariance_eigenvalues`), ``explained_variance_ratio``
    (``lambda_i / sum lambda``), ``cumulative_explained_variance`` (its running sum, the PCA
    explained-variance curve), ``total_variance``, ``effective_rank`` (Roy & Vetterli 2007),
    ``isoscore`` (Rudman et al. 2022; None when ``dim == 1``), ``dims_for_variance``
    (``{"0.9": m, ...}``, see :func:`dims_for_variance`), ``n_vectors`` and ``dim``.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> s = spectrum(x)
    >>> s["explained_variance_ratio"], s["dims_for_variance"]
    ([0.5, 0.5], {'0.9': 2, '0.95': 2, '0.99': 2})
    """
    arr = check_matrix(x, min_rows=2)
    eig = _eigenvalues(covariance_eigenvalues(arr, block_rows))
    ratio = eig / eig.sum()
    return {
        "eigenvalues": eig.tolist(),
        "explained_variance_ratio": ratio.tolist(),
        "cumulative_explained_variance": np.minimum(np.cumsum(ratio), 1.0).tolist(),
        "total_variance": float(eig.sum()),
        "effective_rank": effective_rank_from_eigenvalues(eig),
        "isoscore": isoscore_from_eigenvalues(eig) if eig.size >= 2 else None,
        "dims_for_variance": {f"{q:g}": dims_for_variance(eig, q) for q in levels},
        "n_vectors": int(arr.shape[0]),
        "dim": int(arr.shape[1]),
    }
