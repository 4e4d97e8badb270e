"""Linear projections: PCA (a member of the whitening family), random projection, truncation
(Matryoshka), L2 norm.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(30, 6))
>>> PCA(n_components=3).fit_transform(X).shape, RandomProjection(2, random_state=0).fit_transform(X).shape
((30, 3), (30, 2))
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.random_projection import (
    GaussianRandomProjection,
    SparseRandomProjection,
    johnson_lindenstrauss_min_dim,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from embedkit.aliases import JSONDict
from embedkit.postprocess._base import LinearStep, PostprocessError, _Validated, fit_context
from embedkit.postprocess._base import validate_float_matrix as _validate
from embedkit.postprocess.whitening import _EPS, _N_COMPONENTS, _EigenWhitening

__all__ = ["PCA", "RandomProjection", "Truncate", "Normalize"]


class PCA(_EigenWhitening):
    """PCA as the ``beta=1, gamma=0`` member of the whitening family (``gamma=1`` if ``whiten``).

    ``transform`` equals ``sklearn.decomposition.PCA(svd_solver="full")`` for ``whiten=False``
    (same sign convention). Differences from sklearn: ``n_components=None`` keeps all d
    dimensions (sklearn keeps min(N, d)), and with ``whiten=True`` the variance is the 1/N
    (population) one, so the output is sklearn's times ``sqrt(N / (N - 1))`` -- training data
    then has exactly unit variance. It has ``partial_fit``, ``kernel_`` and ``bias_`` like
    :class:`~embedkit.postprocess.Whitening` (they share a private base; PCA is not a
    Whitening).

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(40, 5))
    >>> PCA(n_components=2).fit_transform(X).shape
    (40, 2)
    """

    _parameter_constraints: JSONDict = {
        "n_components": _N_COMPONENTS, "whiten": ["boolean"], "eps": _EPS,
    }

    def __init__(
        self, n_components: int | str | None = None, whiten: bool = False, eps: float = 1e-6
    ) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.eps = eps

    def _beta_gamma(self) -> tuple[float, float]:
        return 1.0, (1.0 if self.whiten else 0.0)


class RandomProjection(LinearStep):
    """Johnson-Lindenstrauss random projection (Gaussian or sparse), exposed as a dense map.

    Built on sklearn's ``GaussianRandomProjection`` / ``SparseRandomProjection``; the matrix is
    stored densely as ``kernel_`` (d x k) with ``bias_`` zeros so it exports and composes like
    every other linear step: ``transform(X) == (X + bias_) @ kernel_``. The same integer
    ``random_state`` gives the same matrix; the default is the fixed seed 0 (not sklearn's
    None), so two runs of the same chain draw the same matrix and a record can name its seed.

    Parameters
    ----------
    n_components : int or "auto" -- "auto" is the Johnson-Lindenstrauss bound for the number N of
        fitted rows and ``eps`` (sklearn's ``johnson_lindenstrauss_min_dim``); if that exceeds d a
        :class:`PostprocessError` asks for an integer.
    kind : "gaussian" or "sparse".
    random_state : int (default 0), RandomState or None (a fresh draw each fit: not
        reproducible, and a spec cannot name it).
    eps : float in (0, 1), the distortion allowed by "auto".

    >>> import numpy as np
    >>> X = np.ones((4, 10))
    >>> a = RandomProjection(3, random_state=7).fit(X)
    >>> b = RandomProjection(3, random_state=7).fit(X)
    >>> a.kernel_.shape, bool(np.array_equal(a.kernel_, b.kernel_))
    ((10, 3), True)
    >>> a.transform(np.eye(10, dtype=np.float32)).dtype
    dtype('float32')
    >>> bool(np.array_equal(RandomProjection(3).fit(X).kernel_, RandomProjection(3).fit(X).kernel_))
    True
    """

    _parameter_constraints: JSONDict = {
        "n_components": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "kind": [StrOptions({"gaussian", "sparse"})],
        "random_state": ["random_state"],
        "eps": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        n_components: int | str = "auto",
        kind: str = "gaussian",
        random_state: Any = 0,
        eps: float = 0.1,
    ) -> None:
        self.n_components = n_components
        self.kind = kind
        self.random_state = random_state
        self.eps = eps

    @fit_context
    def fit(self, X: Any, y: Any = None) -> RandomProjection:
        """Draw the random matrix for X's dimension (and N, for "auto"); returns ``self``."""
        X = _validate(self, X, reset=True)
        n, d = X.shape
        k = self._n_components(n, d)
        cls = GaussianRandomProjection if self.kind == "gaussian" else SparseRandomProjection
        rp = cls(n_components=k, random_state=self.random_state).fit(X[:1])
        comps = rp.components_
        comps = comps.toarray() if hasattr(comps, "toarray") else np.asarray(comps)
        self.components_ = np.asarray(comps, dtype=np.float64)  # k x d
        self.kernel_ = np.ascontiguousarray(self.components_.T)  # d x k
        self.bias_ = np.zeros(d, dtype=np.float64)
        self.n_components_ = k
        return self

    def _n_components(self, n: int, d: int) -> int:
        if not (isinstance(self.n_components, str) and self.n_components == "auto"):
            return int(self.n_components)
        k = int(johnson_lindenstrauss_min_dim(n, eps=self.eps))
        if k > d:
            raise PostprocessError(
                f"RandomProjection: n_components='auto' asks for k={k} dimensions (the "
                f"Johnson-Lindenstrauss bound for N={n} vectors at eps={self.eps}), more than "
                f"the input dimension d={d}; pass an integer number of components "
                "(e.g. rp:k=128)", param="n_components"
            )
        return k


class Truncate(LinearStep):
    """The first ``n_components`` dimensions (a Matryoshka model's prefix), as a linear step
    (``kernel_`` the first k columns of the identity, ``bias_`` zeros), re-normalised to unit
    length when ``normalize``.

    Re-normalising is what a cosine model wants: cosine is scale invariant, so no cosine score
    changes, but the kept prefix is unit length again for an inner-product index or a step
    fitted after it. For a model compared by dot product it changes the scores (the dot product
    of the re-normalised prefixes is their cosine): use ``normalize=False`` (``norm=0``) to
    keep the prefix's own dot products. Folded by
    :meth:`~embedkit.postprocess.AffineMap.from_pipeline` as its linear part, plus the
    normalisation when it is the last step (like ``norm``).

    >>> import numpy as np
    >>> Truncate(2).fit_transform(np.array([[3.0, 4.0, 12.0]])).tolist()
    [[0.6, 0.8]]
    >>> Truncate(2, normalize=False).fit_transform(np.array([[3.0, 4.0, 12.0]])).tolist()
    [[3.0, 4.0]]
    """

    _parameter_constraints: JSONDict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
    }

    def __init__(self, n_components: int = 256, normalize: bool = True) -> None:
        self.n_components = n_components
        self.normalize = normalize

    @property
    def normalizes_output(self) -> bool:
        """Whether rows are L2-normalised after the linear part (AffineMap folding reads it)."""
        return bool(self.normalize)

    @fit_context
    def fit(self, X: Any, y: Any = None) -> Truncate:
        """Check ``n_components <= d``; returns ``self``."""
        X = _validate(self, X, reset=True)
        d, k = X.shape[1], int(self.n_components)
        if k > d:
            raise PostprocessError(f"Truncate: k={k} is more than the input's {d} dimensions; "
                                   f"keep at most {d}", param="n_components")
        self.kernel_ = np.eye(d, k)
        self.bias_ = np.zeros(d)
        self.n_components_ = k
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The first k columns (rows L2-normalised if ``normalize``; zero rows stay zero)."""
        out = super().transform(X)
        if not self.normalize:
            return out
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.asarray((out / norms).astype(out.dtype, copy=False))


class Normalize(TransformerMixin, _Validated):  # type: ignore[misc]  # sklearn: no stubs
    """L2 row normalisation; stateless (``fit`` only records ``n_features_in_``); zero rows stay zero.

    >>> import numpy as np
    >>> Normalize().fit_transform(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """

    _parameter_constraints: JSONDict = {}

    def fit(self, X: Any, y: Any = None) -> Normalize:
        """No learning; returns ``self``."""
        _validate(self, X, reset=True)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Divide each row by its L2 norm (rows of norm 0 are left as they are)."""
        X = _validate(self, X, reset=False)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.asarray((X / norms).astype(X.dtype, copy=False))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The input names (``x0 ..`` when none were seen)."""
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        if hasattr(self, "feature_names_in_"):
            return np.asarray(self.feature_names_in_, dtype=object)
        check_is_fitted(self, "n_features_in_")
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
