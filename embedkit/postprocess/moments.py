"""Running first and second moments of vectors, in float64, in bounded memory.

``n``, ``mean`` and ``M2 = sum_i (x_i - mean)^T (x_i - mean)`` are updated block by block with
the parallel combination of Chan, Golub and LeVeque (1979), so updating over chunks equals one
pass and memory is O(d^2) whatever N is. (scikit-learn's incremental helpers keep only the
per-feature variance, not the d x d scatter matrix whitening needs.)

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 3))
>>> m = RunningMoments().update(X[:30]).update(X[30:])
>>> bool(np.allclose(m.covariance(), np.cov(X.T, bias=True)))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedkit.errors import ConfigError

__all__ = ["RunningMoments"]

#: float64 elements per block: bounds the working copy to ~32 MB whatever the chunk size.
_BLOCK_ELEMENTS = 1 << 22


@dataclass
class RunningMoments:
    """``n``, ``mean`` (d) and ``m2`` (d x d scatter about the mean), all float64.

    ``mean`` and ``m2`` are ``None`` until the first :meth:`update` (which fixes ``d``).

    >>> m = RunningMoments().update(np.array([[0.0, 2.0], [2.0, 4.0]]))
    >>> m.n, m.mean.tolist(), m.m2.tolist()
    (2, [1.0, 3.0], [[2.0, 2.0], [2.0, 2.0]])
    """

    n: int = 0
    mean: np.ndarray | None = field(default=None, repr=False)
    m2: np.ndarray | None = field(default=None, repr=False)
    #: hashes of the distinct rows seen, kept only up to d + 1 of them (see :attr:`distinct`)
    _seen: set[int] = field(default_factory=set, repr=False, compare=False)

    @property
    def distinct(self) -> int:
        """How many distinct rows were added, counted exactly up to ``d + 1`` (any larger
        number reads ``d + 1``: no fit keeps more than d directions, so more need not be
        counted). Rows are compared by value (-0.0 equals 0.0), in float64.

        >>> m = RunningMoments().update(np.ones((5, 3))).update(np.array([[0.0, 1, 1]]))
        >>> m.n, m.distinct
        (6, 2)
        >>> RunningMoments.of(np.random.default_rng(0).normal(size=(50, 3))).distinct
        4
        """
        return len(self._seen)

    @property
    def d(self) -> int | None:
        """The dimension, or None before any data."""
        return None if self.mean is None else int(self.mean.shape[0])

    @classmethod
    def of(cls, X: Any) -> RunningMoments:
        """The moments of the rows of ``X``.

        >>> RunningMoments.of(np.ones((4, 2))).n
        4
        """
        return cls().update(X)

    def update(self, block: Any) -> RunningMoments:
        """Add the rows of a 2-D array (any float dtype; cast to float64 a block at a time);
        returns ``self``."""
        X = np.asarray(block)
        if X.ndim != 2:
            raise ConfigError(f"RunningMoments: expected a 2-D array, got shape {X.shape}")
        d = X.shape[1]
        if self.mean is None:
            self.mean = np.zeros(d, dtype=np.float64)
            self.m2 = np.zeros((d, d), dtype=np.float64)
        elif d != self.d:
            raise ConfigError(f"RunningMoments: expected {self.d} columns, got {d}")
        step = max(1, _BLOCK_ELEMENTS // max(d, 1))
        for start in range(0, X.shape[0], step):
            part = np.asarray(X[start:start + step], dtype=np.float64)
            if part.shape[0]:
                self._count_distinct(part)
                mean_b = part.mean(axis=0)
                centred = part - mean_b
                self._combine(part.shape[0], mean_b, centred.T @ centred)
        return self

    def _count_distinct(self, part: np.ndarray) -> None:
        """Add the distinct rows of a float64 block to :attr:`distinct` (capped at d + 1)."""
        cap = int(part.shape[1]) + 1
        if len(self._seen) >= cap:
            return
        # + 0.0 turns -0.0 into 0.0; a void view makes np.unique compare whole rows at C speed
        rows = np.ascontiguousarray(part + 0.0)
        unique = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))))
        for row in unique:
            self._seen.add(hash(row.tobytes()))
            if len(self._seen) >= cap:
                return

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Add another accumulator's rows (as if its data had been passed to :meth:`update`);
        returns ``self``.

        >>> X = np.arange(12.0).reshape(6, 2) ** 2
        >>> a = RunningMoments.of(X[:2]).merge(RunningMoments.of(X[2:]))
        >>> bool(np.allclose(a.m2, RunningMoments.of(X).m2))
        True
        """
        if other.n == 0 or other.mean is None or other.m2 is None:
            return self
        if self.mean is None:
            self.mean = np.zeros_like(other.mean)
            self.m2 = np.zeros_like(other.m2)
        elif self.d != other.d:
            raise ConfigError(f"RunningMoments: cannot merge d={other.d} into d={self.d}")
        self._combine(other.n, other.mean, other.m2)
        cap = int(other.mean.shape[0]) + 1
        for h in other._seen:
            if len(self._seen) >= cap:
                break
            self._seen.add(h)
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        assert self.mean is not None and self.m2 is not None
        n_a = self.n
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.n = n

    def covariance(self, about: np.ndarray | None = None, *, beta: float | None = None
                   ) -> np.ndarray:
        """``(1/n) sum_i (x_i - c)^T (x_i - c)`` about ``c = about`` (default: the mean), made
        exactly symmetric; ``about = 0`` gives the uncentred second moment. ``beta`` instead of
        ``about`` means ``c = beta * mean``: the whitening family's Sigma(beta) (its shift
        ``mean - c`` is computed as ``(1 - beta) * mean``).

        >>> m = RunningMoments.of(np.array([[1.0], [3.0]]))
        >>> m.covariance().tolist(), m.covariance(about=np.zeros(1)).tolist()
        ([[1.0]], [[5.0]])
        >>> m.covariance(beta=0.0).tolist()
        [[5.0]]
        """
        if self.n == 0 or self.mean is None or self.m2 is None:
            raise ConfigError("RunningMoments: no data yet")
        if about is not None and beta is not None:
            raise ConfigError("RunningMoments.covariance: give about or beta, not both")
        # sum (x - c)(x - c)^T = M2 + n (mean - c)(mean - c)^T
        if beta is not None:
            shift = (1.0 - float(beta)) * self.mean
        elif about is not None:
            shift = self.mean - np.asarray(about, dtype=np.float64)
        else:
            return np.asarray((self.m2 / self.n + (self.m2 / self.n).T) / 2.0)
        sigma = (self.m2 + self.n * np.outer(shift, shift)) / self.n
        return np.asarray((sigma + sigma.T) / 2.0)
