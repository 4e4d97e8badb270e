"""Generalised BERT-whitening as a scikit-learn transformer.

For embeddings ``X`` (N x d) with mean ``mu`` and a centring weight ``beta``, let

    Sigma = (1/N) sum_i (x_i - beta*mu)^T (x_i - beta*mu) = U Lambda U^T

then ``x~ = (x - beta*mu) U[:, :k] Lambda[:k]^(-gamma/2)``. ``beta = gamma = 1`` is classic
whitening (identity covariance), ``beta = gamma = 0`` is a pure rotation of the uncentred second
moment (cosines unchanged at ``k = d``), ``beta = 1, gamma = 0`` is PCA (see
:class:`embedkit.postprocess.projection.PCA`).

Statistics are a :class:`~embedkit.postprocess.moments.RunningMoments` (float64 ``n, mean,
M2``), so ``partial_fit`` over chunks equals one ``fit`` and memory is O(d^2) whatever N is.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 4)) * [1, 2, 3, 4] + 10
>>> Y = Whitening().fit_transform(X)
>>> bool(np.allclose(Y.mean(0), 0) and np.allclose(Y.T @ Y / len(Y), np.eye(4)))
True
"""

from __future__ import annotations

import contextlib
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from embedkit.aliases import JSONDict
from embedkit.postprocess._base import (
    LinearStep,
    PostprocessError,
    RankDeficientWarning,
    fit_context,
)
from embedkit.postprocess._base import validate_float_matrix as _validate
from embedkit.postprocess.moments import RunningMoments

__all__ = ["Whitening", "eigen_scale", "sigma_eigen"]

_N_COMPONENTS = [None, StrOptions({"all"}), Interval(Integral, 1, None, closed="left")]
_EPS = [Interval(Real, 0, 1, closed="neither")]
_FINITE = [Interval(Real, None, None, closed="neither")]
#: the largest float32: files, FAISS and float32 vectors hold the kernel in float32
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_n_components(n_components: Any, d: int, owner: str) -> int:
    """Resolve ``None``/``"all"``/int (already validated) into a number of kept dimensions."""
    if n_components is None or (isinstance(n_components, str) and n_components == "all"):
        return d
    k = int(n_components)
    if not 1 <= k <= d:
        raise PostprocessError(
            f"{owner}: n_components={k} is out of range: it must be between 1 and the input "
            f"dimension d={d}", param="n_components"
        )
    return k


def _flip_rows(components: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-|.| entry is positive (sklearn's ``svd_flip`` on Vt)."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), idx])
    signs[signs == 0] = 1.0
    flipped: np.ndarray = components * signs[:, None]
    return flipped


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run LAPACK's eigensolver on one thread: for d in the hundreds it is as fast (0.06 s at
    d=512), while OpenBLAS's threaded one slows down 50x when the cores are busy elsewhere."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[Any] = threadpool_limits(limits=1, user_api="blas")
    return limits


def sigma_eigen(moments: RunningMoments, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of ``Sigma(beta)`` (the covariance about ``beta * mean``).

    Returns ``(eigenvalues, components)``: the d eigenvalues in descending order (clipped at 0)
    and the d x d matrix whose rows are the matching sign-normalised eigenvectors. Sigma depends
    only on ``beta``, so one call serves every ``(gamma, k)`` (see :func:`eigen_scale`).

    >>> X = np.random.default_rng(0).normal(size=(30, 3))
    >>> w = Whitening(beta=0.5).fit(X)
    >>> ev, comp = sigma_eigen(w.moments_, 0.5)
    >>> bool(np.allclose(ev, w.eigenvalues_) and np.allclose(comp, w.components_))
    True
    """
    sigma = moments.covariance(beta=beta)
    # Sigma is symmetric positive semi-definite, so its SVD U S V^T has V = U and S equal
    # to its eigenvalues: eigh gives the same decomposition, faster, with exactly orthonormal
    # real eigenvectors (svd of a PSD matrix may pair differently-signed U and V columns).
    with _one_blas_thread():
        evals, evecs = np.linalg.eigh(sigma)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    components = _flip_rows(evecs[:, order].T)  # d x d, rows are directions
    return evals, components


def eigen_scale(
    evals: np.ndarray, k: int, gamma: float, eps: float
) -> tuple[np.ndarray, float, int]:
    """The scaling ``max(lambda_i, floor)^(-gamma/2)`` of the first ``k`` directions.

    ``floor = eps * max eigenvalue`` (``eps`` when all are 0). Returns ``(scale (k,), floor,
    n_clamped)``; ``kernel = components[:k].T * scale``. A prefix of the scale for ``k`` is the
    scale for any smaller ``k``.

    >>> eigen_scale(np.array([4.0, 1.0, 0.0]), 3, 1.0, 0.01)[0].tolist()
    [0.5, 1.0, 5.0]
    """
    top = float(evals[0]) if evals.size else 0.0
    floor = eps * top if top > 0 else float(eps)
    kept = evals[:k]
    n_clamped = int(np.count_nonzero(kept < floor))
    scale = np.maximum(kept, floor) ** (-gamma / 2.0)
    return scale, floor, n_clamped


class _EigenWhitening(LinearStep):
    """The whitening family ``x~ = (x - beta*mu) U Lambda^(-gamma/2)``, first k dims kept:
    running moments, a cached eigen-decomposition and the derived ``kernel_``/``bias_``.
    Subclasses say which ``(beta, gamma)`` their parameters mean (:meth:`_beta_gamma`)."""

    n_components: Any
    eps: float
    moments_: RunningMoments
    _derived: dict[str, Any] | None

    def _beta_gamma(self) -> tuple[float, float]:
        raise NotImplementedError

    # -- fitting ---------------------------------------------------------------------------
    @fit_context
    def fit(self, X: Any, y: Any = None) -> _EigenWhitening:
        """Fit on all of ``X`` at once (resets any previous state); returns ``self``."""
        for attr in ("moments_", "n_features_in_", "_derived"):
            self.__dict__.pop(attr, None)
        self._add(X)
        self._derive(_stack=1)  # eagerly: rank warnings appear at fit time (1: the wrapper)
        return self

    @fit_context
    def partial_fit(self, X: Any, y: Any = None) -> _EigenWhitening:
        """Add a chunk of rows to the running moments; returns ``self``."""
        self._add(X)
        return self

    def _add(self, X: Any) -> None:
        first = "moments_" not in self.__dict__
        X = _validate(self, X, reset=first)
        if first:
            self.moments_ = RunningMoments()
        self.moments_.update(X)
        self._derived = None

    @property
    def mean_(self) -> np.ndarray:
        """The mean of the fitted rows (d)."""
        mean = self.moments_.mean
        assert mean is not None
        return mean

    @property
    def n_samples_seen_(self) -> int:
        """How many rows were fitted."""
        return self.moments_.n

    def __sklearn_is_fitted__(self) -> bool:
        return "moments_" in self.__dict__ and self.moments_.n > 0

    # -- derived matrices --------------------------------------------------------------------
    def _derive(self, _stack: int = 0) -> dict[str, Any]:
        """Eigen-decompose Sigma once per (statistics, parameters) and cache the result
        (``_stack``: frames between the caller and the public method, for warnings)."""
        check_is_fitted(self)
        self._validate_params()
        beta, gamma = self._beta_gamma()
        d = int(self.moments_.d or 0)
        k = _check_n_components(self.n_components, d, type(self).__name__)
        key = (beta, gamma, k, float(self.eps))
        cached: dict[str, Any] | None = self.__dict__.get("_derived")
        if cached is not None and cached["key"] == key:
            return cached
        self._check_distinct(beta, gamma, k, d)
        evals, components = sigma_eigen(self.moments_, beta)
        scale, floor, n_clamped = eigen_scale(evals, k, gamma, float(self.eps))
        if n_clamped and (gamma != 0 or k < d):  # at k = d, gamma = 0 it is a rotation
            self._warn_clamped(n_clamped, k, floor, d, 4 + _stack)
        kernel = components[:k].T * scale[None, :]
        if not (np.all(np.isfinite(kernel)) and np.abs(kernel).max() <= _FLOAT32_MAX):
            raise PostprocessError(
                f"{type(self).__name__}: the whitening kernel overflows float32 (largest "
                f"entry {np.abs(kernel).max():.3g}; gamma={gamma:g} raises the smallest "
                f"eigenvalues to the power -{gamma / 2:g}): a file, FAISS or float32 vectors "
                "would hold infinities; use a smaller gamma or a larger eps", param="gamma"
            )
        self._derived = {"key": key, "k": k, "eigenvalues": evals,
                         "components": components[:k].copy(), "kernel": kernel,
                         "bias": -beta * self.mean_}
        return self._derived

    def _check_distinct(self, beta: float, gamma: float, k: int, d: int) -> None:
        """Refuse a fit that cannot be meaningful: fewer distinct vectors than kept directions
        (the extra directions would be arbitrary; a rotation, gamma = 0 at k = d, is exempt),
        or identical vectors centred away (no variance at all to scale)."""
        n, distinct, name = self.moments_.n, self.moments_.distinct, type(self).__name__
        if gamma == 0 and k == d:
            return
        if distinct == 1 and (k > 1 or beta == 1):
            raise PostprocessError(
                f"{name}: the fitted vectors are all identical (one distinct vector in {n} "
                f"sample{'s' if n != 1 else ''}): there is no variance to whiten or project; "
                "fit on distinct sentences",
                param="n_components")
        if distinct < k:
            raise PostprocessError(
                f"{name}: k={k} kept directions (n_components) but the fit saw only "
                f"{distinct} distinct vectors among its {n} rows, so {k - distinct} or more "
                "directions would be arbitrary; fit on more distinct sentences or use "
                f"k <= {distinct}", param="n_components")

    def _warn_clamped(self, n_clamped: int, k: int, floor: float, d: int, stack: int) -> None:
        warnings.warn(
            f"{type(self).__name__}: {n_clamped} of the {k} kept directions have variance "
            f"below eps*max = {floor:.3g} and were clamped to it (N={self.moments_.n} samples, "
            f"d={d} features): the data is rank-deficient, those directions are arbitrary (one "
            "such direction is expected for vectors read off a final LayerNorm, which lie in "
            "a hyperplane); otherwise consider fitting on more vectors or a smaller "
            "n_components",
            RankDeficientWarning,
            stacklevel=stack,
        )

    @property
    def eigenvalues_(self) -> np.ndarray:
        """All d eigenvalues of Sigma, descending (before clamping)."""
        return np.asarray(self._derive()["eigenvalues"])

    @property
    def components_(self) -> np.ndarray:
        """The k kept directions as rows (k x d), sign-normalised."""
        return np.asarray(self._derive()["components"])

    @property
    def kernel_(self) -> np.ndarray:
        """The d x k matrix of ``transform(X) == (X + bias_) @ kernel_``."""
        return np.asarray(self._derive()["kernel"])

    @property
    def bias_(self) -> np.ndarray:
        """The d-vector ``-beta * mean_`` of ``transform(X) == (X + bias_) @ kernel_``."""
        return np.asarray(self._derive()["bias"])

    @property
    def n_components_(self) -> int:
        """The number k of output dimensions."""
        return int(self._derive()["k"])


class Whitening(_EigenWhitening):
    """Generalised BERT-whitening ``x~ = (x - beta*mu) U Lambda^(-gamma/2)``, first k dims kept.

    Parameters
    ----------
    beta : float, centring weight (1 = subtract the mean, 0 = no centring).
    gamma : float, scaling exponent (1 = unit variance, 0 = rotation only).
    n_components : int, None or "all" -- the number k of kept dimensions (None/"all" = d).
    eps : float in (0, 1), eigenvalues below ``eps * max eigenvalue`` are clamped to that floor
        for the scaling (a :class:`RankDeficientWarning` says how many; output stays finite).

    Learned attributes: ``moments_`` (:class:`RunningMoments`), ``mean_`` (d), ``eigenvalues_``
    (d, descending, of Sigma, unclamped), ``components_`` (k x d, rows are directions),
    ``kernel_`` (d x k), ``bias_`` (d) with ``transform(X) == (X + bias_) @ kernel_``,
    ``n_components_``, ``n_samples_seen_``, ``n_features_in_``. The matrices are derived lazily
    from the running moments after ``partial_fit`` (eagerly at the end of ``fit``), so many
    small chunks stay cheap.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> w = Whitening(n_components=2).fit(X)
    >>> w.kernel_.shape, w.bias_.shape, w.transform(X.astype(np.float32)).dtype
    ((3, 2), (3,), dtype('float32'))
    >>> a = Whitening().partial_fit(X[:7]).partial_fit(X[7:])
    >>> bool(np.allclose(a.kernel_, Whitening().fit(X).kernel_)), a.n_samples_seen_
    (True, 50)
    >>> w.get_feature_names_out()
    array(['whitening0', 'whitening1'], dtype=object)
    """

    _parameter_constraints: JSONDict = {
        "beta": _FINITE, "gamma": _FINITE, "n_components": _N_COMPONENTS, "eps": _EPS,
    }

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 1.0,
        n_components: int | str | None = None,
        eps: float = 1e-6,
    ) -> None:
        self.beta = beta
        self.gamma = gamma
        self.n_components = n_components
        self.eps = eps

    def _beta_gamma(self) -> tuple[float, float]:
        return float(self.beta), float(self.gamma)
