"""Vector quantisers as post-processing steps: ``int8`` / ``uint8`` (per-dimension ranges fitted
on calibration vectors, with an optional clipping percentile) and ``binary`` / ``ubinary`` (the
sign of each dimension, packed 8 to a byte).

Every quantiser is the last step of a chain (``whiten:k=256,int8``). ``transform`` returns the
codes (``int8`` / ``uint8``; packed bits as sentence-transformers' ``quantize_embeddings`` packs
them: ``binary`` is ``packbits - 128`` as int8, ``ubinary`` the packed uint8). Scores travel with
the step: :attr:`similarity` names how a pair of code vectors is compared and :meth:`decode`
gives the vectors it is computed on (int8/uint8: cosine of the dequantised vectors; binary:
Hamming similarity ``1 - hamming / bits`` of the sign vectors), so the one STS scoring path
(:meth:`embedkit.evaluation.STSEvaluator.score_task`) scores any chain (:func:`quantizer_of`).

The ranges are fitted, not taken from the batch being quantised (sentence-transformers #2837:
its int8 of one sentence is all zeros), so one sentence quantises as it does within a batch;
:func:`save_quantized` writes them, exactly, into a transform file's metadata (``quantize``),
and :func:`~embedkit.postprocess.resolve_post` of that file gives the same chain back.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 16))
>>> q = ScalarQuantizer("int8").fit(X)
>>> codes = q.transform(X[:1])
>>> codes.dtype, q.bytes_per_vector_, bool(np.array_equal(codes, q.transform(X)[:1]))
(dtype('int8'), 16, True)
>>> b = BinaryQuantizer().fit(X)
>>> b.transform(X).shape, b.bytes_per_vector_, b.similarity
((100, 2), 2, 'hamming')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from embedkit.aliases import JSONDict, StrPath
from embedkit.errors import ConfigError
from embedkit.postprocess._base import PostprocessError, _Validated, fit_context
from embedkit.postprocess._base import validate_float_matrix as _validate
from embedkit.postprocess.affine import AffineMap, pipeline_steps
from embedkit.postprocess.files import load_transform, save_transform

__all__ = ["ScalarQuantizer", "BinaryQuantizer", "ProductQuantizer", "PQ_TRAIN_PER_CENTROID",
           "pq_train_sample", "quantizer_of", "scored_output",
           "bytes_per_vector",
           "save_quantized", "quantizer_from_file", "QUANTIZE_KEY"]

#: the metadata key of a transform file that holds a fitted quantiser
QUANTIZE_KEY = "quantize"
_LEVELS = 255  # 256 codes: 255 steps between low and high


class _Quantizer(TransformerMixin, _Validated):  # type: ignore[misc]  # sklearn: no stubs
    """What the quantisers share: the last step of a chain, scored on :meth:`decode`."""

    #: marks a step whose output is codes, not a linear map (AffineMap.from_pipeline refuses it)
    is_quantizer = True
    #: how two decoded vectors are compared: ``cosine`` or ``hamming``
    similarity = "cosine"

    def decode(self, codes: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def bytes_per_vector_(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def bytes_for(self, k: int) -> int:  # pragma: no cover - overridden
        """Bytes of the codes of one ``k``-dimensional vector."""
        raise NotImplementedError

    def _codes(self, codes: Any, width: int) -> np.ndarray:
        check_is_fitted(self)
        arr = np.asarray(codes)
        if arr.ndim != 2 or arr.shape[1] != width or arr.dtype != self._dtype():
            raise PostprocessError(
                f"{type(self).__name__}: expected {self._dtype()} codes of shape (n, {width}), "
                f"got {arr.dtype} {arr.shape}; decode what this step's transform returned")
        return arr

    def _dtype(self) -> np.dtype:  # pragma: no cover - overridden
        raise NotImplementedError

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags


class ScalarQuantizer(_Quantizer):
    """``int8`` / ``uint8`` scalar quantisation with per-dimension ranges fitted on calibration
    vectors (256 levels from ``low_`` to ``high_``; values outside are clipped).

    Parameters
    ----------
    dtype : "int8" (codes -128..127) or "uint8" (codes 0..255).
    clip : float in [0.5, 1]: the range of each dimension is its ``1 - clip`` .. ``clip``
        quantiles of the calibration vectors (1.0: min .. max), so outliers do not stretch it.
    ranges : a transform file written by :func:`save_quantized` whose ranges are used instead
        of fitting (its kind must be ``dtype``; the ranges' dimension must match the input).

    ``decode`` (also ``inverse_transform``) maps codes back to ``low_ + level * scale_``; pairs
    are scored by the cosine of the decoded vectors.

    >>> X = np.array([[0.0, -1.0], [1.0, 1.0]])
    >>> q = ScalarQuantizer("uint8").fit(X)
    >>> q.transform([[0.5, 0.0], [2.0, -5.0]]).tolist()
    [[128, 128], [255, 0]]
    >>> np.round(q.decode(q.transform([[0.5, 0.0]])), 3).tolist()
    [[0.502, 0.004]]
    """

    _parameter_constraints: JSONDict = {
        "dtype": [StrOptions({"int8", "uint8"})],
        "clip": [Interval(Real, 0.5, 1, closed="both")],
        "ranges": [str, os.PathLike, None],
    }

    def __init__(self, dtype: str = "int8", clip: float = 1.0,
                 ranges: StrPath | None = None) -> None:
        self.dtype = dtype
        self.clip = clip
        self.ranges = ranges

    @fit_context
    def fit(self, X: Any, y: Any = None) -> ScalarQuantizer:
        """Fit (or load from ``ranges``) the range of each dimension; returns ``self``."""
        X = _validate(self, X, reset=True)
        if self.ranges is not None:
            low, high = self._load_ranges(X.shape[1])
        elif float(self.clip) >= 1.0:
            low, high = X.min(axis=0), X.max(axis=0)
        else:
            low = np.quantile(X, 1.0 - float(self.clip), axis=0)
            high = np.quantile(X, float(self.clip), axis=0)
        self.low_ = np.asarray(low, dtype=np.float64)
        self.high_ = np.asarray(high, dtype=np.float64)
        width = self.high_ - self.low_
        # a constant dimension: any positive step (its codes are all the lowest level)
        self.scale_ = np.where(width > 0, width / _LEVELS, 1.0)
        return self

    def _load_ranges(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.ranges is not None
        meta = _quantize_metadata(self.ranges)
        if meta.get("kind") != self.dtype:
            raise PostprocessError(
                f"{self.ranges}: the file holds a {meta.get('kind')} quantiser, not {self.dtype}",
                param="ranges")
        low, high = (np.asarray(meta.get(k), dtype=np.float64) for k in ("low", "high"))
        if low.shape != (d,) or high.shape != (d,):
            raise PostprocessError(
                f"{self.ranges}: the ranges have {low.size} dimensions but the vectors it "
                f"quantises have {d}; use the file with the chain it was fitted after",
                param="ranges")
        return low, high

    def _dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def _offset(self) -> int:
        return 128 if self.dtype == "int8" else 0

    def transform(self, X: Any) -> np.ndarray:
        """The codes of ``X`` (``dtype``), each dimension clipped to its fitted range."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        levels = np.rint((np.asarray(X, np.float64) - self.low_) / self.scale_)
        levels = np.clip(levels, 0, _LEVELS)
        return (levels - self._offset).astype(self.dtype)

    def decode(self, codes: Any) -> np.ndarray:
        """The float64 vectors the codes stand for: ``low_ + level * scale_``."""
        arr = self._codes(codes, self.low_.shape[0])
        return self.low_ + (arr.astype(np.float64) + self._offset) * self.scale_

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Same as :meth:`decode` (scikit-learn's name)."""
        return self.decode(X)

    def bytes_for(self, k: int) -> int:
        """One byte per dimension: ``k``."""
        return int(k)

    @property
    def bytes_per_vector_(self) -> int:
        """One byte per dimension."""
        check_is_fitted(self)
        return int(self.low_.shape[0])

    def to_metadata(self) -> dict[str, Any]:
        """What :func:`save_quantized` stores (the ranges as exact JSON floats)."""
        check_is_fitted(self)
        return {"kind": self.dtype, "clip": float(self.clip), "low": self.low_.tolist(),
                "high": self.high_.tolist()}


class BinaryQuantizer(_Quantizer):
    """``binary`` / ``ubinary``: one bit per dimension (``x > 0``), packed 8 to a byte (the last
    byte zero-padded), as sentence-transformers packs them: ``binary`` gives int8
    (``packbits - 128``), ``ubinary`` (``unsigned=True``) uint8. Nothing is learned: ``fit``
    records the dimension. Pairs are scored by Hamming similarity ``1 - hamming / d``
    (:meth:`decode` gives the +-1 sign vectors it is computed on).

    >>> b = BinaryQuantizer(unsigned=True).fit(np.zeros((1, 10)))
    >>> b.transform([[1.0, -1, 1, -1, 1, -1, 1, -1, 1, 1]]).tolist()
    [[170, 192]]
    >>> b.decode(b.transform([[1.0, -2, 0, 0, 0, 0, 0, 0, 0, 3]])).astype(int).tolist()
    [[1, -1, -1, -1, -1, -1, -1, -1, -1, 1]]
    """

    similarity = "hamming"
    _parameter_constraints: JSONDict = {"unsigned": ["boolean"]}

    def __init__(self, unsigned: bool = False) -> None:
        self.unsigned = unsigned

    @fit_context
    def fit(self, X: Any, y: Any = None) -> BinaryQuantizer:
        """Record the dimension; returns ``self``."""
        _validate(self, X, reset=True)
        self.n_bits_ = int(self.n_features_in_)
        return self

    def _dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.unsigned else np.int8)

    def transform(self, X: Any) -> np.ndarray:
        """The packed sign bits of ``X``: ``ceil(d / 8)`` bytes per row."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        packed = np.packbits(X > 0, axis=1)
        if self.unsigned:
            return packed
        return (packed.astype(np.int16) - 128).astype(np.int8)

    def decode(self, codes: Any) -> np.ndarray:
        """The +-1 sign vectors (float64, d columns) of packed codes."""
        arr = self._codes(codes, self.bytes_per_vector_)
        packed = arr if self.unsigned else (arr.astype(np.int16) + 128).astype(np.uint8)
        bits = np.unpackbits(packed, axis=1)[:, : self.n_bits_]
        return bits.astype(np.float64) * 2.0 - 1.0

    def bytes_for(self, k: int) -> int:
        """``ceil(k / 8)``."""
        return (int(k) + 7) // 8

    @property
    def bytes_per_vector_(self) -> int:
        """``ceil(d / 8)``."""
        check_is_fitted(self)
        return (self.n_bits_ + 7) // 8

    def to_metadata(self) -> dict[str, Any]:
        """What :func:`save_quantized` stores."""
        check_is_fitted(self)
        return {"kind": "ubinary" if self.unsigned else "binary", "bits": self.n_bits_}


class ProductQuantizer(_Quantizer):
    """``pq:m=M[,nbits=B]``: faiss's ``ProductQuantizer`` (``m`` sub-vectors of ``2**nbits``
    centroids each, trained on a seeded sample of the fit vectors, at most
    :data:`PQ_TRAIN_PER_CENTROID` per centroid); codes are its packed uint8 codes, scores the
    cosine of the decoded (reconstructed) vectors. The codebooks are not saved in a transform
    file (an IVF-PQ index keeps them: the factory ``IVFn,PQm``).

    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
    >>> q = ProductQuantizer(m=4, nbits=4).fit(X)
    >>> q.transform(X).shape, q.bytes_per_vector_, q.decode(q.transform(X)).shape
    ((300, 2), 2, (300, 8))
    """

    _parameter_constraints: dict[str, Any] = {"m": [int], "nbits": [int]}

    def __init__(self, m: int = 16, nbits: int = 8) -> None:
        self.m = m
        self.nbits = nbits

    def fit(self, X: Any, y: Any = None) -> ProductQuantizer:
        import faiss

        X = _validate(self, X, reset=True)
        (n, d), centroids = X.shape, 2 ** int(self.nbits)
        if d % int(self.m):
            raise ConfigError(f"pq:m={self.m} does not divide the {d} dimensions; give an m "
                              "that does", param="post")
        if n < centroids:
            raise ConfigError(f"pq:m={self.m},nbits={self.nbits} trains {centroids} centroids "
                              f"per sub-vector on {n} fit vectors; give a smaller nbits or more "
                              "fit sentences", param="post")
        self.pq_: Any = faiss.ProductQuantizer(d, int(self.m), int(self.nbits))
        self.pq_.train(pq_train_sample(X, centroids))
        return self

    def _dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def transform(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return np.asarray(self.pq_.compute_codes(np.ascontiguousarray(X, dtype=np.float32)))

    def decode(self, codes: Any) -> np.ndarray:
        arr = self._codes(codes, int(self.pq_.code_size))
        return np.asarray(self.pq_.decode(np.ascontiguousarray(arr)), dtype=np.float64)

    def bytes_for(self, k: int) -> int:
        return (int(self.m) * int(self.nbits) + 7) // 8

    @property
    def bytes_per_vector_(self) -> int:
        return int(self.pq_.code_size)

    def to_metadata(self) -> dict[str, Any]:
        raise ConfigError(f"pq:m={self.m}: product-quantiser codebooks are not saved in a "
                          "transform file; index with an IVF-PQ factory instead", param="post")



#: PQ trains on at most this many vectors per centroid (a seeded sample; faiss asks for 39)
PQ_TRAIN_PER_CENTROID = 40


def pq_train_sample(X: np.ndarray, centroids: int) -> np.ndarray:
    """At most ``PQ_TRAIN_PER_CENTROID * centroids`` rows of ``X`` (seeded), float32."""
    n = PQ_TRAIN_PER_CENTROID * centroids
    if len(X) > n:
        X = X[np.sort(np.random.default_rng(0).choice(len(X), n, replace=False))]
    return np.ascontiguousarray(X, dtype=np.float32)



def quantizer_of(pipeline: Any) -> _Quantizer | None:
    """The quantiser that ends a chain (a Pipeline, an estimator, a list, or the bound
    ``transform`` of one), None when it does not end in one; a quantiser elsewhere in the chain
    is a :class:`ConfigError` (codes are not vectors to transform further).

    >>> from embedkit.postprocess import parse_post
    >>> p = parse_post("whiten,int8")
    >>> type(quantizer_of(p.transform)).__name__, quantizer_of(parse_post("pca"))
    ('ScalarQuantizer', None)
    """
    owner = getattr(pipeline, "__self__", pipeline)
    if not isinstance(owner, (Pipeline, BaseEstimator, list, tuple)):
        return None
    ests = pipeline_steps(owner)
    found = [i for i, est in enumerate(ests) if getattr(est, "is_quantizer", False)]
    if found and found[0] != len(ests) - 1:
        raise ConfigError(f"a quantiser ({type(ests[found[0]]).__name__}) must be the last step "
                          "of a chain: its codes are not vectors to transform further",
                          param="post")
    return ests[-1] if found else None


def scored_output(pipeline: Any, X: Any) -> tuple[np.ndarray, str | None]:
    """A fitted chain's output on ``X`` as the vectors its scores are computed on, and the
    similarity they are compared by: a quantiser's decoded codes and its similarity (cosine of
    the dequantised vectors, or Hamming of the sign vectors: their cosine is ``2 s - 1`` of
    the Hamming similarity ``s``, the same ranking), else the output and None (the caller's).

    >>> from embedkit.postprocess import parse_post
    >>> X = np.random.default_rng(0).normal(size=(20, 4))
    >>> x, sim = scored_output(parse_post("binary").fit(X), X)
    >>> x.shape, sim, sorted(set(x.ravel().tolist()))
    ((20, 4), 'hamming', [-1.0, 1.0])
    """
    quant = quantizer_of(pipeline)
    out = pipeline.transform(X)
    if quant is None:
        return np.asarray(out), None
    return quant.decode(out), quant.similarity


def bytes_per_vector(pipeline: Any, d: int) -> int:
    """Bytes of one output vector of a fitted chain on ``d``-dimensional input: a quantiser's
    codes (int8/uint8: k; binary: ceil(k / 8)), else k float32 values (4 k).

    >>> from embedkit.postprocess import parse_post
    >>> X = np.random.default_rng(0).normal(size=(50, 16))
    >>> [bytes_per_vector(parse_post(s).fit(X), 16) for s in ("pca:k=8", "pca:k=8,int8", "binary")]
    [32, 8, 2]
    """
    quant = quantizer_of(pipeline)
    if quant is not None:
        return int(quant.bytes_per_vector_)
    k = int(d)
    for est in pipeline_steps(pipeline):
        kernel = getattr(est, "kernel_", None)
        if kernel is not None:
            k = int(np.asarray(kernel).shape[1])
    return 4 * k


def save_quantized(path: StrPath, pipeline: Pipeline | Sequence[BaseEstimator],
                   metadata: dict[str, Any] | None = None, format: str | None = None) -> None:
    """Write a fitted chain that ends in a quantiser as one transform file: the folded linear
    part (the identity for a lone quantiser) and the quantiser under the metadata key
    ``quantize`` (its ranges as exact JSON floats). safetensors or npz; a FAISS transform
    cannot hold a quantiser. :func:`~embedkit.postprocess.resolve_post` of the file gives the
    chain back, ``file`` (+ ``norm``) + the quantiser with the stored ranges.
    """
    ests = pipeline_steps(pipeline)
    quant = quantizer_of(ests)
    if quant is None:
        raise ConfigError(f"{path}: the chain does not end in a quantiser; save a map with "
                          "save_transform", param="post")
    if str(format or Path(path).suffix.lstrip(".")).lower() == "faiss":
        raise ConfigError(f"{path}: a FAISS transform cannot hold a quantiser ({quant.to_metadata()['kind']}); "
                          "save it as .safetensors or .npz", param="format")
    linear = ests[:-1]
    amap = (AffineMap.from_pipeline(linear) if linear
            else AffineMap.identity(int(quant.n_features_in_)))
    save_transform(path, amap, {**(metadata or {}), QUANTIZE_KEY: quant.to_metadata()}, format)


def _quantize_metadata(path: StrPath) -> dict[str, Any]:
    meta = load_transform(path).metadata.get(QUANTIZE_KEY)
    if not isinstance(meta, dict):
        raise PostprocessError(f"{path}: holds no fitted quantiser (metadata key "
                               f"{QUANTIZE_KEY!r}); write it with save_quantized", param="ranges")
    return meta


def quantizer_from_file(path: StrPath, metadata: dict[str, Any]) -> _Quantizer:
    """The quantiser step a transform file's ``quantize`` metadata describes (its ranges read
    from ``path`` when the step is fitted)."""
    meta = metadata.get(QUANTIZE_KEY)
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind in ("int8", "uint8"):
        return ScalarQuantizer(str(kind), clip=float(meta.get("clip", 1.0)),  # type: ignore[union-attr]
                               ranges=str(path))
    if kind in ("binary", "ubinary"):
        return BinaryQuantizer(unsigned=kind == "ubinary")
    raise ConfigError(f"{path}: metadata key {QUANTIZE_KEY!r} names no quantiser "
                      f"({kind!r}; int8, uint8, binary or ubinary)", param="post")

