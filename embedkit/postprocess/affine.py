"""The one representation of a fitted linear post-processing map: :class:`AffineMap`.

``y = (x + bias) @ kernel``, then L2-normalised when ``normalize``. Every export (safetensors,
npz, FAISS, sentence-transformers) and every consumer (bench, index folders, the FAISS index)
takes an :class:`AffineMap`; :meth:`AffineMap.from_pipeline` folds a fitted chain of steps into
one.

>>> import numpy as np
>>> m = AffineMap(np.eye(3)[:, :2], np.ones(3))
>>> m.d, m.k, m.apply(np.zeros((1, 3))).tolist()
(3, 2, [[1.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from embedkit.errors import ConfigError, EmbedkitError
from embedkit.postprocess.projection import Normalize

__all__ = ["AffineMap", "import_faiss", "pipeline_steps"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _frozen(a: Any, ndim: int, what: str) -> np.ndarray:
    out = np.array(a, dtype=np.float64, copy=True)  # a copy: the caller's array stays writable
    if out.ndim != ndim:
        raise ConfigError(f"AffineMap: {what} must have {ndim} dimension(s), got shape {out.shape}")
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class AffineMap:
    """``y = (x + bias) @ kernel`` (``kernel`` d x k, ``bias`` d), then L2 rows if ``normalize``.

    Stored as read-only float64 copies; :meth:`float32` gives the arrays files and FAISS store.
    Two maps are equal when their arrays and ``normalize`` are.

    >>> m = AffineMap(2 * np.eye(2), np.zeros(2), normalize=True)
    >>> m.apply(np.array([[3.0, 4.0]])).tolist()
    [[0.6, 0.8]]
    >>> m == AffineMap(2 * np.eye(2), np.zeros(2), normalize=True)
    True
    >>> AffineMap(np.eye(2), np.zeros(3))
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: AffineMap: expected kernel of shape (d, k) and bias of shape (d,), got (2, 2) and (3,)
    """

    kernel: np.ndarray
    bias: np.ndarray
    normalize: bool = False

    def __post_init__(self) -> None:
        kernel = _frozen(self.kernel, 2, "kernel")
        bias = _frozen(self.bias, 1, "bias")
        if bias.shape[0] != kernel.shape[0] or kernel.shape[1] < 1:
            raise ConfigError(
                f"AffineMap: expected kernel of shape (d, k) and bias of shape (d,), got "
                f"{kernel.shape} and {bias.shape}"
            )
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise ConfigError("AffineMap: kernel or bias contains NaN or infinite values")
        if max(np.abs(kernel).max(), np.abs(bias).max(initial=0.0)) > _FLOAT32_MAX:
            raise ConfigError("AffineMap: kernel or bias exceeds the float32 range (|x| <= "
                              f"{_FLOAT32_MAX:.3g}) in which files and FAISS store it")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "normalize", bool(self.normalize))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AffineMap):
            return NotImplemented
        return (self.normalize == other.normalize and np.array_equal(self.kernel, other.kernel)
                and np.array_equal(self.bias, other.bias))

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    def __repr__(self) -> str:
        return f"AffineMap(d={self.d}, k={self.k}, normalize={self.normalize})"

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.kernel.shape[0])

    @property
    def k(self) -> int:
        """Output dimension."""
        return int(self.kernel.shape[1])

    @classmethod
    def identity(cls, d: int, normalize: bool = False) -> AffineMap:
        """The map that changes nothing (but L2-normalises with ``normalize``).

        >>> AffineMap.identity(3).apply(np.ones((1, 3))).tolist()
        [[1.0, 1.0, 1.0]]
        """
        return cls(np.eye(int(d)), np.zeros(int(d)), normalize)

    def apply(self, X: Any) -> np.ndarray:
        """``(X + bias) @ kernel`` in float64 (rows L2-normalised if ``normalize``; zero rows
        stay zero).

        >>> AffineMap(np.ones((2, 1)), np.zeros(2)).apply([[1.0, 2.0]]).tolist()
        [[3.0]]
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ConfigError(f"AffineMap: expected vectors of shape (n, {self.d}), got {X.shape}")
        out = (X + self.bias) @ self.kernel
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
        return out

    def float32(self) -> tuple[np.ndarray, np.ndarray]:
        """``(kernel, bias)`` as C-contiguous float32 copies (what files and FAISS store).

        >>> [a.dtype.name for a in AffineMap.identity(2).float32()]
        ['float32', 'float32']
        """
        return (np.ascontiguousarray(self.kernel, dtype=np.float32),
                np.ascontiguousarray(self.bias, dtype=np.float32))

    def sha256(self) -> str:
        """sha256 of the map as files store it (float32 kernel and bias, shapes,
        ``normalize``): a fitted chain and the file it was saved to give the same digest.

        >>> AffineMap.identity(2).sha256()[:12]
        'd3ed8f490b96'
        """
        import hashlib

        kernel, bias = self.float32()
        h = hashlib.sha256(f"affine:{self.d}x{self.k}:normalize={self.normalize}\0".encode())
        h.update(kernel.tobytes())
        h.update(bias.tobytes())
        return h.hexdigest()

    def with_normalize(self, normalize: bool) -> AffineMap:
        """The same linear part with ``normalize`` set.

        >>> AffineMap.identity(2).with_normalize(True).normalize
        True
        """
        return AffineMap(self.kernel, self.bias, normalize)

    def to_faiss(self) -> list[Any]:
        """FAISS ``VectorTransform`` objects doing the same: a ``LinearTransform`` with
        ``A = kernel.T``, ``b = bias @ kernel`` (FAISS computes ``y = A x + b``), then a
        ``NormalizationTransform`` when ``normalize``. Chain them in an ``IndexPreTransform``
        or write the first with ``faiss.write_VectorTransform``.

        >>> m = AffineMap(np.eye(3)[:, :2], np.ones(3), normalize=True)
        >>> [type(t).__name__ for t in m.to_faiss()]
        ['LinearTransform', 'NormalizationTransform']
        >>> m.to_faiss()[0].apply(np.zeros((1, 3), dtype=np.float32)).tolist()
        [[1.0, 1.0]]
        """
        faiss = import_faiss()
        A = np.ascontiguousarray(self.kernel.T, dtype=np.float32)
        b = np.ascontiguousarray(self.bias @ self.kernel, dtype=np.float32)
        lt = faiss.LinearTransform(self.d, self.k, True)
        faiss.copy_array_to_vector(A.ravel(), lt.A)
        faiss.copy_array_to_vector(b, lt.b)
        lt.is_trained = True
        out = [lt]
        if self.normalize:
            out.append(faiss.NormalizationTransform(self.k, 2.0))
        return out

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]
                      ) -> AffineMap:
        """Fold the fitted linear steps of a pipeline (or one estimator) into one map.

        A linear step is a fitted estimator with ``kernel_`` and ``bias_`` (its transform is
        ``(x + bias_) @ kernel_``); :class:`~embedkit.postprocess.Normalize` (``norm``) is
        allowed last only and sets ``normalize``, as does a linear step that re-normalises its
        output (``normalizes_output``, e.g. ``truncate``), folded with its linear part. Each step is ``y = x K_i + b_i K_i``; the
        product ``x W + c`` is rewritten with ``bias = c @ pinv(W)``, exact when ``W`` has full
        column rank (checked: otherwise :class:`ConfigError`).

        >>> from embedkit.postprocess import parse_post
        >>> X = np.random.default_rng(0).normal(size=(40, 6))
        >>> p = parse_post("whiten,pca:k=3").fit(X)
        >>> m = AffineMap.from_pipeline(p)
        >>> bool(np.allclose(m.apply(X), p.transform(X))), m.normalize
        (True, False)
        """
        ests = pipeline_steps(pipeline)
        if not ests:
            raise ConfigError("AffineMap.from_pipeline: the pipeline has no steps")
        quant = next((est for est in ests if getattr(est, "is_quantizer", False)), None)
        if quant is not None:
            raise ConfigError(
                f"AffineMap.from_pipeline: {type(quant).__name__} is a quantiser, not a linear "
                "map: a chain with one is no single map (nor a FAISS transform, an index's post "
                "or a sentence-transformers Dense layer); save it with save_quantized")
        normalize = _is_normalizer(ests[-1]) or _renormalises(ests[-1])
        if any(_is_normalizer(est) or _renormalises(est) for est in ests[:-1]):
            raise ConfigError(
                "AffineMap.from_pipeline: 'norm' (Normalize), or a step that re-normalises "
                "(truncate with norm=1), is only allowed as the last step, the map after it is "
                "not linear"
            )
        linear = ests[:-1] if _is_normalizer(ests[-1]) else ests
        if not linear:
            d = getattr(ests[-1], "n_features_in_", None)
            if d is None:
                raise ConfigError(
                    "AffineMap.from_pipeline: a pipeline of only 'norm' needs fitting to know d"
                )
            return cls.identity(int(d), True)
        return _compose([_linear_of(est) for est in linear], normalize)


def _is_normalizer(est: Any) -> bool:
    return isinstance(est, Normalize)


def _renormalises(est: Any) -> bool:
    """A linear step that L2-normalises its output (``truncate`` with ``norm=1``)."""
    return bool(getattr(est, "normalizes_output", False))


def _linear_of(est: Any) -> tuple[np.ndarray, np.ndarray]:
    name = type(est).__name__
    try:
        check_is_fitted(est)
    except (NotFittedError, TypeError) as exc:
        raise ConfigError(
            f"AffineMap.from_pipeline: step {name} is not fitted; fit the pipeline first"
        ) from exc
    kernel = getattr(est, "kernel_", None)
    bias = getattr(est, "bias_", None)
    if kernel is None or bias is None:
        raise ConfigError(
            f"AffineMap.from_pipeline: {name} is not a linear step (no kernel_/bias_)"
        )
    return np.asarray(kernel, dtype=np.float64), np.asarray(bias, dtype=np.float64)


def _compose(maps: list[tuple[np.ndarray, np.ndarray]], normalize: bool) -> AffineMap:
    W, b0 = maps[0]
    if len(maps) == 1:
        return AffineMap(W, b0, normalize)
    c = b0 @ W
    for j, (K, b) in enumerate(maps[1:], start=2):
        if W.shape[1] != K.shape[0]:
            raise ConfigError(
                f"AffineMap.from_pipeline: step {j} expects {K.shape[0]} inputs but step {j - 1} "
                f"gives {W.shape[1]}"
            )
        W = W @ K
        c = (c + b) @ K
    bias = c @ np.linalg.pinv(W)
    scale = max(1.0, float(np.abs(c).max()))
    if not np.allclose(bias @ W, c, rtol=0, atol=1e-8 * scale):
        raise ConfigError(
            "AffineMap.from_pipeline: the composed map cannot be written as (x + bias) @ "
            f"kernel, its {W.shape[0]} x {W.shape[1]} kernel does not have full column rank"
        )
    return AffineMap(W, bias, normalize)


def pipeline_steps(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]
                   ) -> list[BaseEstimator]:
    """The estimators of a Pipeline, one estimator or a list (``None``/"passthrough" dropped).

    >>> from embedkit.postprocess import Normalize
    >>> pipeline_steps(Pipeline([("a", "passthrough"), ("n", Normalize())]))
    [Normalize()]
    """
    if isinstance(pipeline, Pipeline):
        items = [est for _, est in pipeline.steps]
    elif isinstance(pipeline, BaseEstimator):
        items = [pipeline]
    else:
        items = list(pipeline)
    return [est for est in items
            if est is not None and not (isinstance(est, str) and est == "passthrough")]


def import_faiss() -> Any:
    """``import faiss``, or an :class:`EmbedkitError` saying how to install it."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is installed in the test environment
        raise EmbedkitError(
            "FAISS transforms need the faiss package: pip install embedkit[faiss] "
            "(or pip install faiss-cpu)"
        ) from exc
    return faiss
