"""The whitening family ``(beta, gamma, k)`` from one eigen-decomposition per ``beta``.

Sigma depends only on ``beta``: given the running moments, Sigma is eigen-decomposed once per
``beta`` (:class:`WhiteningFamily`) and every ``(gamma, k)`` map derives from the same
eigenvalues and eigenvectors. Scoring rotates each evaluation vector once per ``beta``; the
cosine of every ``(gamma, k)`` then follows from per-dimension products weighted by
``lambda^-gamma`` and summed over the first ``k`` dimensions (one small matrix product), so a
60-setting grid takes seconds once the vectors are known.

>>> import numpy as np
>>> from embedkit.postprocess import Whitening
>>> X = np.random.default_rng(0).normal(size=(200, 6)) * [1, 2, 3, 4, 5, 6]
>>> fam = WhiteningFamily.fit(X, beta=1.0)
>>> m = fam.map(gamma=0.5, k=3)
>>> w = Whitening(beta=1.0, gamma=0.5, n_components=3).fit(X)
>>> bool(np.allclose(m.kernel, w.kernel_) and np.allclose(m.bias, w.bias_))
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedkit.postprocess.affine import AffineMap
from embedkit.postprocess.moments import RunningMoments
from embedkit.postprocess.whitening import eigen_scale, sigma_eigen

__all__ = ["WhiteningFamily", "grid_cosines", "score_grid", "score_quantized_grid"]

#: (cosines (n,), labels (n,)) -> a score, e.g. Spearman (the evaluation layer provides it)
CosineScore = Callable[[np.ndarray, np.ndarray], float]
#: (vectors1, vectors2, labels, similarity) -> a score (the evaluation layer's pair scoring)
PairScore = Callable[[np.ndarray, np.ndarray, np.ndarray, str], float]


@dataclass(frozen=True)
class WhiteningFamily:
    """One eigen-decomposition of ``Sigma(beta)``; every ``(gamma, k)`` map derives from it."""

    beta: float
    mean: np.ndarray
    eigenvalues: np.ndarray
    components: np.ndarray  # d x d, rows are directions (sign-normalised as Whitening's)
    eps: float = 1e-6

    @classmethod
    def from_stats(cls, moments: RunningMoments, beta: float, eps: float = 1e-6
                   ) -> WhiteningFamily:
        """From running moments (e.g. ``Whitening().partial_fit(X).moments_``)."""
        evals, components = sigma_eigen(moments, float(beta))
        assert moments.mean is not None
        return cls(float(beta), moments.mean, evals, components, float(eps))

    @classmethod
    def fit(cls, X: Any, beta: float, eps: float = 1e-6) -> WhiteningFamily:
        """From the rows of ``X``."""
        return cls.from_stats(RunningMoments.of(X), beta, eps)

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])

    @property
    def bias(self) -> np.ndarray:
        """``-beta * mean``, the bias of every map of the family."""
        return -self.beta * self.mean

    def resolve_k(self, k: int | str) -> int:
        """``"all"`` -> d, else ``int(k)``."""
        return self.d if k == "all" else int(k)

    def kernel(self, gamma: float, k: int | str) -> np.ndarray:
        """The d x k kernel of ``Whitening(beta, gamma, k)`` fitted on the same data."""
        kk = self.resolve_k(k)
        scale, _, _ = eigen_scale(self.eigenvalues, kk, float(gamma), self.eps)
        return self.components[:kk].T * scale[None, :]

    def map(self, gamma: float, k: int | str) -> AffineMap:
        """The :class:`AffineMap` of ``(beta, gamma, k)``."""
        return AffineMap(self.kernel(gamma, k), self.bias)

    def scale_squared(self, gammas: Sequence[float], kmax: int) -> np.ndarray:
        """``kmax x len(gammas)``: the squared scale of each kept direction, per gamma."""
        cols = [eigen_scale(self.eigenvalues, kmax, float(g), self.eps)[0] ** 2 for g in gammas]
        return np.stack(cols, axis=1)


def grid_cosines(family: WhiteningFamily, gammas: Sequence[float], ks: Sequence[int],
                 X1: np.ndarray, X2: np.ndarray) -> np.ndarray:
    """Cosine of each pair after every ``(gamma, k)`` map: ``n x len(gammas) x len(ks)``.

    Equal (to rounding) to the cosines of ``map(gamma, k).apply(X1)`` and ``..(X2)``, but the
    rotation is done once; a pair with a zero vector has cosine 0.

    >>> X = np.random.default_rng(1).normal(size=(50, 4))
    >>> fam = WhiteningFamily.fit(X, 1.0)
    >>> cos = grid_cosines(fam, [0.0, 1.0], [2, 4], X[:5], X[5:10])
    >>> m = fam.map(1.0, 2); a, b = m.apply(X[:5]), m.apply(X[5:10])
    >>> ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    >>> cos.shape, bool(np.allclose(cos[:, 1, 0], ref))
    ((5, 2, 2), True)
    """
    kmax = max(ks)
    C = family.components[:kmax]
    S = family.scale_squared(gammas, kmax)  # kmax x G
    mask = (np.arange(kmax)[:, None] < np.asarray(ks)[None, :]).astype(np.float64)  # kmax x K
    W = (S[:, :, None] * mask[:, None, :]).reshape(kmax, len(gammas) * len(ks))
    Z1 = (np.asarray(X1, np.float64) + family.bias) @ C.T
    Z2 = (np.asarray(X2, np.float64) + family.bias) @ C.T
    dot = (Z1 * Z2) @ W
    den = np.sqrt(((Z1 * Z1) @ W) * ((Z2 * Z2) @ W))
    cos = np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)
    return cos.reshape(-1, len(gammas), len(ks))


def score_grid(family: WhiteningFamily, gammas: Sequence[float], ks: Sequence[int],
               pairs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
               score: CosineScore) -> dict[str, np.ndarray]:
    """``score(cosines, labels)`` for every ``(gamma, k)``: ``{name: len(gammas) x len(ks)}``.

    ``pairs`` maps a split name to ``(X1, X2, labels)``; ``score`` is e.g. Spearman of the
    quantised cosines (the evaluation layer's).

    >>> X = np.random.default_rng(2).normal(size=(40, 3))
    >>> s = score_grid(WhiteningFamily.fit(X, 0.0), [1.0], [1, 3],
    ...                {"t": (X[:20], X[20:], np.arange(20.0))}, lambda c, y: float(c.mean()))
    >>> s["t"].shape
    (1, 2)
    """
    out = {}
    for name, (X1, X2, labels) in pairs.items():
        cos = grid_cosines(family, gammas, ks, X1, X2).reshape(-1, len(gammas) * len(ks))
        scores = np.array([score(cos[:, j], labels) for j in range(cos.shape[1])])
        out[name] = scores.reshape(len(gammas), len(ks))
    return out


def score_quantized_grid(family: WhiteningFamily, gammas: Sequence[float], ks: Sequence[int],
                         fit_x: np.ndarray, pairs: Mapping[str, tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]],
                         quantizer: Any, score: PairScore) -> dict[str, np.ndarray]:
    """:func:`score_grid` of every ``(gamma, k)`` map followed by ``quantizer`` (an unfitted
    int8/uint8/binary step): the quantiser is fitted on the fit vectors ``fit_x`` mapped by
    that setting, and each pair is scored on the decoded codes by the quantiser's similarity
    (``score(decoded1, decoded2, labels, similarity)``). Each map is applied, so this costs a
    matrix product per setting, not the shortcut of :func:`grid_cosines`.

    >>> from embedkit.postprocess.quantize import BinaryQuantizer
    >>> X = np.random.default_rng(2).normal(size=(40, 3))
    >>> s = score_quantized_grid(WhiteningFamily.fit(X, 1.0), [1.0], [1, 3], X,
    ...                          {"t": (X[:20], X[20:], np.arange(20.0))}, BinaryQuantizer(),
    ...                          lambda a, b, y, sim: float((a == b).mean()))
    >>> s["t"].shape
    (1, 2)
    """
    from sklearn.base import clone

    out = {name: np.full((len(gammas), len(ks)), np.nan) for name in pairs}
    for gi, gamma in enumerate(gammas):
        for ki, k in enumerate(ks):
            amap = family.map(gamma, k)
            quant = clone(quantizer).fit(amap.apply(fit_x))
            for name, (X1, X2, labels) in pairs.items():
                d1 = quant.decode(quant.transform(amap.apply(X1)))
                d2 = quant.decode(quant.transform(amap.apply(X2)))
                out[name][gi, ki] = score(d1, d2, labels, quant.similarity)
    return out
