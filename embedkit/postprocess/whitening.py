"""Generalised BERT-whitening as a scikit-learn transformer.

For embeddings ``X`` (N x d) with mean ``mu`` and a centring weight ``beta``, let

    Sigma = (1/N) sum_i (x_i - beta*mu)^T (x_i - beta*mu) = U Lambda U^T

then ``x~ = (x - beta*mu) U[:, :k] Lambda[:k]^(-gamma/2)``. ``beta = gamma = 1`` is classic
whitening (identity covariance), ``beta = gamma = 0`` is a pure rotation of the uncentred second
moment (cosines unchanged at ``k = d``), ``beta = 1, gamma = 0`` is PCA (see
:class:`embedkit.postprocess.projection.PCA`).

Statistics are accumulated in float64 with the parallel (Chan et al.) update of
``n, mean, M2 = sum (x - mean)^T (x - mean)``, so ``partial_fit`` over chunks equals one ``fit``
and memory is O(d^2) whatever N is.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(200, 4)) * [1, 2, 3, 4] + 10
>>> Y = Whitening().fit_transform(X)
>>> bool(np.allclose(Y.mean(0), 0) and np.allclose(Y.T @ Y / len(Y), np.eye(4)))
True
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from embedkit.errors import ConfigError

__all__ = ["PostprocessError", "RankDeficientWarning", "Whitening", "eigen_scale", "sigma_eigen"]

_FLOAT_DTYPES = (np.float64, np.float32)


class PostprocessError(ConfigError, ValueError):
    """A bad post-processing setting or input; both a :class:`ConfigError` and a ``ValueError``.

    The CLI prints it as one line (it is an ``EmbedkitError``); scikit-learn code that expects
    ``ValueError`` from estimators (``GridSearchCV`` and the estimator checks) still gets one.

    >>> issubclass(PostprocessError, ValueError) and issubclass(PostprocessError, ConfigError)
    True
    """


class RankDeficientWarning(UserWarning):
    """Some kept directions had (near-)zero variance and their eigenvalue was clamped.

    >>> issubclass(RankDeficientWarning, UserWarning)
    True
    """


def _validate(est: BaseEstimator, X: Any, *, reset: bool) -> np.ndarray:
    """``validate_data`` for a float matrix, turning sklearn's ValueError into PostprocessError."""
    try:
        return validate_data(est, X, reset=reset, dtype=list(_FLOAT_DTYPES), ensure_2d=True)
    except PostprocessError:
        raise
    except ValueError as exc:
        raise PostprocessError(f"{type(est).__name__}: {exc}") from exc


def _check_n_components(n_components: Any, d: int, owner: str) -> int:
    """Resolve ``None``/``"all"``/int into a number of kept dimensions in 1..d."""
    if n_components is None or (isinstance(n_components, str) and n_components == "all"):
        return d
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise PostprocessError(
            f"{owner}: n_components must be a positive integer, None or 'all', got {n_components!r}"
        )
    k = int(n_components)
    if not 1 <= k <= d:
        raise PostprocessError(
            f"{owner}: n_components={k} is out of range: it must be between 1 and the input "
            f"dimension d={d}"
        )
    return k


def _flip_rows(components: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-|.| entry is positive (sklearn's ``svd_flip`` on Vt)."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(components.shape[0]), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def _one_blas_thread():
    """Run LAPACK's eigensolver on one thread: for d in the hundreds it is as fast (0.06 s at
    d=512), while OpenBLAS's threaded one slows down 50x when the cores are busy elsewhere."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def sigma_eigen(
    mean: np.ndarray, m2: np.ndarray, n: int, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of ``Sigma(beta)`` from the running statistics ``(n, mean, M2)``.

    Returns ``(eigenvalues, components)``: the d eigenvalues in descending order (clipped at 0)
    and the d x d matrix whose rows are the matching sign-normalised eigenvectors. Sigma depends
    only on ``beta``, so one call serves every ``(gamma, k)`` (see :func:`eigen_scale`).

    >>> X = np.random.default_rng(0).normal(size=(30, 3))
    >>> w = Whitening(beta=0.5).fit(X)
    >>> ev, comp = sigma_eigen(w.mean_, w._m2, 30, 0.5)
    >>> bool(np.allclose(ev, w.eigenvalues_) and np.allclose(comp, w.components_))
    True
    """
    # sum (x - c)(x - c)^T = M2 + N (mu - c)(mu - c)^T with c = beta*mu.
    shift = (1.0 - beta) * mean
    sigma = (m2 + n * np.outer(shift, shift)) / n
    sigma = (sigma + sigma.T) / 2.0
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


class Whitening(TransformerMixin, BaseEstimator):
    """Generalised BERT-whitening ``x~ = (x - beta*mu) U Lambda^(-gamma/2)``, first k dims kept.

    Parameters
    ----------
    beta : float, centring weight (1 = subtract the mean, 0 = no centring).
    gamma : float, scaling exponent (1 = unit variance, 0 = rotation only).
    n_components : int, None or "all" -- the number k of kept dimensions (None/"all" = d).
    eps : float > 0, eigenvalues below ``eps * max eigenvalue`` are clamped to that floor for the
        scaling (a :class:`RankDeficientWarning` says how many; output stays finite).

    Learned attributes: ``mean_`` (d), ``eigenvalues_`` (d, descending, of Sigma, unclamped),
    ``components_`` (k x d, rows are directions), ``kernel_`` (d x k), ``bias_`` (d) with
    ``transform(X) == (X + bias_) @ kernel_``, ``n_components_``, ``n_samples_seen_``,
    ``n_features_in_``. The matrices are derived lazily from the running statistics after
    ``partial_fit`` (eagerly at the end of ``fit``), so many small chunks stay cheap.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> w = Whitening(n_components=2).fit(X)
    >>> w.kernel_.shape, w.bias_.shape, w.transform(X.astype(np.float32)).dtype
    ((3, 2), (3,), dtype('float32'))
    """

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

    # -- the (beta, gamma) actually used; PCA overrides this ------------------------------
    def _beta_gamma(self) -> tuple[float, float]:
        return float(self.beta), float(self.gamma)

    def _check_params(self) -> None:
        name = type(self).__name__
        beta, gamma = self._beta_gamma()
        if not (np.isfinite(beta) and np.isfinite(gamma)):
            raise PostprocessError(f"{name}: beta and gamma must be finite numbers")
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < 1:
            raise PostprocessError(f"{name}: eps must be a number in (0, 1), got {eps!r}")

    # -- fitting ---------------------------------------------------------------------------
    def _reset(self) -> None:
        for attr in ("n_samples_seen_", "mean_", "n_features_in_", "_m2", "_derived"):
            self.__dict__.pop(attr, None)

    def fit(self, X: Any, y: Any = None) -> Whitening:
        """Fit on all of ``X`` at once (resets any previous state); returns ``self``.

        >>> import numpy as np
        >>> Whitening().fit(np.random.default_rng(0).normal(size=(9, 3))).n_samples_seen_
        9
        """
        self._reset()
        self.partial_fit(X)
        self._derive()  # eagerly, so that warnings about rank deficiency appear at fit time
        return self

    def partial_fit(self, X: Any, y: Any = None) -> Whitening:
        """Add a chunk of rows to the running statistics; returns ``self``.

        >>> import numpy as np
        >>> X = np.random.default_rng(1).normal(size=(30, 3))
        >>> a = Whitening().partial_fit(X[:7]).partial_fit(X[7:])
        >>> bool(np.allclose(a.kernel_, Whitening().fit(X).kernel_))
        True
        """
        self._check_params()
        first = not hasattr(self, "n_samples_seen_")
        X = _validate(self, X, reset=first)
        d = X.shape[1]
        if first:
            self.n_samples_seen_ = 0
            self.mean_ = np.zeros(d, dtype=np.float64)
            self._m2 = np.zeros((d, d), dtype=np.float64)
        # Blocks bound the float64 working copy to ~32 MB whatever the chunk size.
        step = max(1, (1 << 22) // max(d, 1))
        for start in range(0, X.shape[0], step):
            self._update(np.asarray(X[start : start + step], dtype=np.float64))
        self._derived = None
        return self

    def _update(self, block: np.ndarray) -> None:
        """Chan et al. parallel combination of (n, mean, M2) with one block's statistics."""
        n_b = block.shape[0]
        if n_b == 0:
            return
        mean_b = block.mean(axis=0)
        centred = block - mean_b
        m2_b = centred.T @ centred
        n_a = self.n_samples_seen_
        n = n_a + n_b
        delta = mean_b - self.mean_
        self.mean_ = self.mean_ + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.n_samples_seen_ = n

    # -- derived matrices --------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_samples_seen_") and self.n_samples_seen_ > 0

    def _derive(self) -> dict[str, Any]:
        """Eigen-decompose Sigma once per (statistics, parameters) and cache the result."""
        check_is_fitted(self)
        self._check_params()
        beta, gamma = self._beta_gamma()
        d = self.mean_.shape[0]
        k = _check_n_components(self.n_components, d, type(self).__name__)
        key = (beta, gamma, k, float(self.eps))
        cached = self.__dict__.get("_derived")
        if cached is not None and cached["key"] == key:
            return cached

        n = self.n_samples_seen_
        evals, components = sigma_eigen(self.mean_, self._m2, n, beta)
        scale, floor, n_clamped = eigen_scale(evals, k, gamma, float(self.eps))
        if n_clamped and gamma != 0:
            warnings.warn(
                f"{type(self).__name__}: {n_clamped} of the {k} kept directions have variance "
                f"below eps*max = {floor:.3g} and were clamped to it (N={n} samples, d={d} "
                "features): the data is rank-deficient, those directions are arbitrary (one "
                "such direction is expected for vectors read off a final LayerNorm, which lie in "
                "a hyperplane); otherwise consider fitting on more vectors or a smaller "
                "n_components",
                RankDeficientWarning,
                stacklevel=3,
            )
        kernel = components[:k].T * scale[None, :]
        if not np.all(np.isfinite(kernel)):
            raise PostprocessError(
                f"{type(self).__name__}: the whitening kernel overflowed (gamma={gamma}); "
                "use a smaller gamma or a larger eps"
            )
        self._derived = {
            "key": key,
            "k": k,
            "eigenvalues": evals,
            "components": components[:k].copy(),
            "kernel": kernel,
            "bias": -beta * self.mean_,
        }
        return self._derived

    @property
    def eigenvalues_(self) -> np.ndarray:
        """All d eigenvalues of Sigma, descending (before clamping)."""
        return self._derive()["eigenvalues"]

    @property
    def components_(self) -> np.ndarray:
        """The k kept directions as rows (k x d), sign-normalised."""
        return self._derive()["components"]

    @property
    def kernel_(self) -> np.ndarray:
        """The d x k matrix of ``transform(X) == (X + bias_) @ kernel_``."""
        return self._derive()["kernel"]

    @property
    def bias_(self) -> np.ndarray:
        """The d-vector ``-beta * mean_`` of ``transform(X) == (X + bias_) @ kernel_``."""
        return self._derive()["bias"]

    @property
    def n_components_(self) -> int:
        """The number k of output dimensions."""
        return self._derive()["k"]

    # -- transform ---------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Return ``(X + bias_) @ kernel_`` in the input's float dtype (computed in float64).

        >>> import numpy as np
        >>> X = np.random.default_rng(2).normal(size=(20, 3))
        >>> w = Whitening().fit(X)
        >>> bool(np.allclose(w.transform(X), (X + w.bias_) @ w.kernel_))
        True
        """
        check_is_fitted(self)
        derived = self._derive()
        X = _validate(self, X, reset=False)
        out = (np.asarray(X, dtype=np.float64) + derived["bias"]) @ derived["kernel"]
        return out.astype(X.dtype, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output names ``<classname>0 .. <classname>{k-1}``.

        >>> import numpy as np
        >>> Whitening(n_components=2).fit(np.random.default_rng(0).normal(size=(9, 3))).get_feature_names_out()
        array(['whitening0', 'whitening1'], dtype=object)
        """
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
