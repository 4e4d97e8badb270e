"""Argument checks, row-block iteration and seeded pair sampling shared by the diagnostics.

Private: the public functions live in the concept modules and are re-exported by the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from embedkit.errors import ConfigError, check_int

#: Rows processed at once, so that no step holds more than ``BLOCK_ROWS x n`` numbers.
BLOCK_ROWS = 4096


def as_matrix(x: ArrayLike, name: str = "x", min_rows: int = 1) -> np.ndarray:
    """``x`` as a 2-D real array (not copied when it already is one), or a ConfigError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ConfigError(
            f"{name} must be a 2-D array of shape (n_vectors, dim); got shape {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.shape[1] < 1:
        raise ConfigError(f"{name} must have at least one column; got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ConfigError(
            f"{name} needs at least {min_rows} rows (vectors); got {arr.shape[0]}"
        )
    return arr


def check_seed(seed: Any) -> int:
    """A seed for ``numpy.random.default_rng``: a non-negative int."""
    return check_int(seed, "seed", minimum=0)


def finite_block(
    block: np.ndarray, name: str, start: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """``block`` as float64, or a ConfigError naming the first row with NaN or infinity (row
    ``start + t`` of the input, or ``rows[t]`` when the block was gathered from ``rows``)."""
    out = np.asarray(block, dtype=np.float64)
    if not np.isfinite(out).all():
        t = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        bad = int(rows[t]) if rows is not None else start + t
        raise ConfigError(f"{name} holds NaN or infinite values (first in row {bad}); "
                          "drop or repair those rows first")
    return out


def row_blocks(
    arr: np.ndarray, block_rows: int = BLOCK_ROWS, name: str = "x"
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, float64 block)`` over the rows of ``arr``, checking every value is finite."""
    step = check_int(block_rows, "block_rows")
    for start in range(0, arr.shape[0], step):
        yield start, finite_block(arr[start:start + step], name, start)


def column_mean(arr: np.ndarray, block_rows: int = BLOCK_ROWS, name: str = "x") -> np.ndarray:
    """The mean row of ``arr`` in float64, summed block by block."""
    total = np.zeros(arr.shape[1], dtype=np.float64)
    for _, block in row_blocks(arr, block_rows, name):
        total += block.sum(axis=0)
    return total / arr.shape[0]


def random_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` seeded index pairs ``(i, j)`` with ``i != j``, drawn uniformly with replacement.

    ``j`` is drawn from the ``n - 1`` rows other than ``i``, so every pair is distinct-row.
    """
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs)
    j = rng.integers(0, n - 1, size=n_pairs)
    j = j + (j >= i)
    return i, j


def summary(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation (ddof=0) and quartiles of a 1-D array, as plain floats."""
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return {
        "mean": float(np.mean(values)), "std": float(np.std(values)),
        "p25": float(q25), "median": float(q50), "p75": float(q75),
        "min": float(np.min(values)), "max": float(np.max(values)),
    }
