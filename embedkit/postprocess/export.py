"""Save and load a fitted linear post-processing map ``y = (x + bias) @ kernel``.

Formats, chosen by the file suffix:

- ``.safetensors``: tensors ``kernel`` (d x k float32) and ``bias`` (d float32); the metadata is
  the safetensors string header -- strings are stored as they are, every other value as JSON,
  and the key ``embedkit_json_keys`` (a JSON list) names the JSON-encoded ones;
- ``.npz``: arrays ``kernel``, ``bias`` and ``metadata`` (the whole metadata dict as one JSON
  string in a numpy unicode array), readable with ``np.load(path, allow_pickle=False)``;
- a FAISS ``LinearTransform`` (``save_faiss_transform``), for ``IndexPreTransform``.

Metadata always holds ``embedkit_version``, ``d`` and ``k``; callers add ``model``, ``pooling``
(checked by :func:`check_compatible`), and e.g. ``max_length``, ``spec``, ``beta``, ``gamma``,
``n_samples``, ``fit_data_sha256``.

>>> import numpy as np, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save_transform(p, np.eye(3)[:, :2], np.zeros(3), {"model": "m", "beta": 1.0})
>>> t = load_transform(p)
>>> t.kernel.shape, t.metadata["beta"], t.metadata["d"], t.metadata["model"]
((3, 2), 1.0, 3, 'm')
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from embedkit.io.atomic import atomic_path
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.postprocess.whitening import PostprocessError, _validate

__all__ = [
    "TransformFile",
    "CompatibilityWarning",
    "save_transform",
    "load_transform",
    "FixedTransform",
    "check_compatible",
    "save_faiss_transform",
    "load_faiss_transform",
]

_JSON_KEYS = "embedkit_json_keys"
_FORMATS = {".safetensors": "safetensors", ".npz": "npz"}


class CompatibilityWarning(UserWarning):
    """A transform file was fitted for another model/pooling/dimension, used anyway (``force``).

    >>> issubclass(CompatibilityWarning, UserWarning)
    True
    """


@dataclass
class TransformFile:
    """A loaded transform: ``y = (x + bias) @ kernel`` plus its metadata and source path.

    >>> t = TransformFile(np.eye(2), np.ones(2), {"d": 2})
    >>> t.d, t.k, t.apply(np.zeros((1, 2))).tolist()
    (2, 2, [[1.0, 1.0]])
    """

    kernel: np.ndarray
    bias: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.kernel.shape[0])

    @property
    def k(self) -> int:
        """Output dimension."""
        return int(self.kernel.shape[1])

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``(X + bias) @ kernel`` computed in float64."""
        return (np.asarray(X, dtype=np.float64) + self.bias) @ np.asarray(self.kernel, np.float64)


def _check_matrices(kernel: Any, bias: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.asarray(kernel)
    bias = np.asarray(bias)
    if kernel.ndim != 2 or bias.ndim != 1 or bias.shape[0] != kernel.shape[0]:
        raise ConfigError(
            f"{where}: expected kernel of shape (d, k) and bias of shape (d,), got "
            f"{kernel.shape} and {bias.shape}"
        )
    if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
        raise ConfigError(f"{where}: kernel or bias contains NaN or infinite values")
    return kernel, bias


def _format_of(path: Path, format: str | None) -> str:
    by_suffix = _FORMATS.get(path.suffix.lower())
    if format is None:
        return by_suffix or "safetensors"
    if format not in ("safetensors", "npz"):
        raise ConfigError(f"unknown transform format {format!r}; valid: safetensors, npz")
    if by_suffix is not None and by_suffix != format:
        raise ConfigError(
            f"{path}: the suffix {path.suffix!r} says {by_suffix} but format={format!r} was "
            "asked; load_transform chooses the format by suffix, so make them agree"
        )
    return format


def _json_safe(value: Any) -> Any:
    """numpy scalars/arrays -> Python values so json.dumps accepts them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def save_transform(
    path: str | os.PathLike,
    kernel: np.ndarray,
    bias: np.ndarray,
    metadata: dict[str, Any] | None = None,
    format: str | None = None,
) -> None:
    """Write ``kernel`` (d x k) and ``bias`` (d) as float32 with metadata, atomically.

    ``format`` is "safetensors" or "npz"; by default it follows the suffix (safetensors when the
    suffix is neither). ``embedkit_version``, ``d`` and ``k`` are added to the metadata.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_transform(p, np.ones((2, 1)), np.zeros(2), {"pooling": "mean"})
    >>> sorted(json.loads(str(np.load(p, allow_pickle=False)["metadata"])))
    ['d', 'embedkit_version', 'k', 'pooling']
    """
    from embedkit import __version__

    path = Path(path)
    fmt = _format_of(path, format)
    kernel, bias = _check_matrices(kernel, bias, str(path))
    d, k = kernel.shape
    meta = {str(key): _json_safe(v) for key, v in (metadata or {}).items()}
    for key, expected in (("d", d), ("k", k)):
        if key in meta and int(meta[key]) != expected:
            raise ConfigError(
                f"{path}: metadata says {key}={meta[key]} but the kernel is {d} x {k}"
            )
    meta.pop(_JSON_KEYS, None)
    meta = {"embedkit_version": __version__, **meta, "d": d, "k": k}
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: metadata is not JSON-serialisable: {exc}") from exc
    kernel32 = np.ascontiguousarray(kernel, dtype=np.float32)
    bias32 = np.ascontiguousarray(bias, dtype=np.float32)

    if fmt == "safetensors":
        from safetensors.numpy import save_file

        header = {}
        json_keys = []
        for key, v in meta.items():
            if isinstance(v, str):
                header[key] = v
            else:
                header[key] = json.dumps(v, ensure_ascii=False)
                json_keys.append(key)
        header[_JSON_KEYS] = json.dumps(json_keys)
        with atomic_path(path) as tmp:
            save_file({"kernel": kernel32, "bias": bias32}, str(tmp), metadata=header)
    else:
        text = np.array(json.dumps(meta, ensure_ascii=False))  # 0-d unicode array, no pickle
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            # A file object, so numpy does not append ".npz" to the temporary name.
            np.savez(fh, kernel=kernel32, bias=bias32, metadata=text)


def load_transform(path: str | os.PathLike) -> TransformFile:
    """Read a file written by :func:`save_transform` (format by suffix: .safetensors / .npz).

    A missing, corrupt or malformed file raises :class:`ConfigError` naming the path.

    >>> load_transform("/nonexistent/w.npz")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: /nonexistent/w.npz: transform file not found
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: transform file not found")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        with open(path, "rb") as fh:
            fmt = "npz" if fh.read(2) == b"PK" else "safetensors"
    try:
        if fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as fh:
                header = dict(fh.metadata() or {})
                names = set(fh.keys())
                if not {"kernel", "bias"} <= names:
                    raise ConfigError(
                        f"{path}: not an embedkit transform (tensors {sorted(names)}, expected "
                        "'kernel' and 'bias')"
                    )
                kernel = fh.get_tensor("kernel")
                bias = fh.get_tensor("bias")
            json_keys = set(json.loads(header.pop(_JSON_KEYS, "[]")))
            metadata = {k: (json.loads(v) if k in json_keys else v) for k, v in header.items()}
        else:
            # Our own handle: np.load leaks the file it opened when the zip is corrupt.
            with open(path, "rb") as raw, np.load(raw, allow_pickle=False) as z:
                if not {"kernel", "bias"} <= set(z.files):
                    raise ConfigError(
                        f"{path}: not an embedkit transform (arrays {sorted(z.files)}, expected "
                        "'kernel' and 'bias')"
                    )
                kernel = z["kernel"]
                bias = z["bias"]
                metadata = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
            if not isinstance(metadata, dict):
                raise ConfigError(f"{path}: the metadata entry is not a JSON object")
    except EmbedkitError:
        raise
    except Exception as exc:  # corrupt file: safetensors, zipfile, json and numpy errors
        raise ConfigError(f"{path}: cannot read transform file ({fmt}): {exc}") from exc
    kernel, bias = _check_matrices(kernel, bias, str(path))
    return TransformFile(kernel=kernel, bias=bias, metadata=metadata, path=path)


class FixedTransform(TransformerMixin, BaseEstimator):
    """A saved map used as a pipeline step (``file:PATH``): ``fit`` loads it, nothing is learned.

    ``transform(X) == (X + bias_) @ kernel_``; ``metadata_`` holds the file's metadata. ``fit``
    accepts ``X=None`` (only loads); with data it checks the dimension.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> save_transform(p, 2 * np.eye(2), np.ones(2), {})
    >>> FixedTransform(p).fit(None).transform(np.zeros((1, 2))).tolist()
    [[2.0, 2.0]]
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = path

    def fit(self, X: Any = None, y: Any = None) -> FixedTransform:
        """Load the file (and check X's dimension against it); returns ``self``."""
        if self.path is None:
            raise PostprocessError("FixedTransform: no path given (file:PATH)")
        t = load_transform(self.path)
        if X is not None:
            X = _validate(self, X, reset=True)
            if X.shape[1] != t.d:
                raise PostprocessError(
                    f"{self.path}: the transform expects d={t.d} input dimensions but the "
                    f"vectors have {X.shape[1]}"
                )
        else:
            self.n_features_in_ = t.d
        self.kernel_ = np.asarray(t.kernel, dtype=np.float64)
        self.bias_ = np.asarray(t.bias, dtype=np.float64)
        self.metadata_ = t.metadata
        self.n_components_ = t.k
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(X + bias_) @ kernel_`` in the input's float dtype."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        out = (np.asarray(X, dtype=np.float64) + self.bias_) @ self.kernel_
        return out.astype(X.dtype, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output names ``fixedtransform0 ..``."""
        check_is_fitted(self)
        return np.asarray([f"fixedtransform{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def check_compatible(
    metadata: dict[str, Any],
    *,
    model: str | None,
    pooling: str | None,
    dim: int | None,
    force: bool = False,
) -> None:
    """Refuse a transform fitted for another ``model``, ``pooling`` or input dimension ``d``.

    Arguments left ``None`` and keys missing from ``metadata`` are not checked. A mismatch raises
    :class:`ConfigError` naming both values; with ``force=True`` it is a
    :class:`CompatibilityWarning` instead.

    >>> check_compatible({"model": "a", "d": 4}, model="a", pooling="cls", dim=4)
    >>> check_compatible({"model": "a"}, model="b", pooling=None, dim=None)
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: transform file was fitted for model 'a' but is being used with model 'b'; pass --force to use it anyway
    """
    problems = []
    checks = (("model", "model", model), ("pooling", "pooling", pooling), ("d", "dimension", dim))
    for key, label, actual in checks:
        if actual is None or metadata.get(key) is None:
            continue
        fitted = metadata[key]
        if key == "d":
            try:
                same = int(fitted) == int(actual)
            except (TypeError, ValueError):
                same = False
        else:
            same = str(fitted) == str(actual)
        if not same:
            problems.append(
                f"{label} {fitted!r} but is being used with {label} {actual!r}"
                if key != "d"
                else f"input dimension d={fitted} but the vectors have d={actual}"
            )
    if not problems:
        return
    message = "transform file was fitted for " + "; and for ".join(problems)
    if force:
        warnings.warn(message + " (used anyway: --force)", CompatibilityWarning, stacklevel=2)
        return
    raise ConfigError(message + "; pass --force to use it anyway")


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss is installed in the test environment
        raise EmbedkitError(
            "FAISS transforms need the faiss package: pip install embedkit[faiss] "
            "(or pip install faiss-cpu)"
        ) from exc
    return faiss


def save_faiss_transform(path: str | os.PathLike, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Write the map as a ``faiss.LinearTransform`` (``y = A x + b``, ``A = kernel.T``,
    ``b = bias @ kernel``) with ``faiss.write_VectorTransform``, atomically.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.faiss")
    >>> save_faiss_transform(p, np.eye(3)[:, :2], np.ones(3))
    >>> load_faiss_transform(p).apply(np.zeros((1, 3), dtype=np.float32)).tolist()
    [[1.0, 1.0]]
    """
    faiss = _import_faiss()
    kernel, bias = _check_matrices(kernel, bias, str(path))
    kernel = np.asarray(kernel, dtype=np.float64)
    d, k = kernel.shape
    A = np.ascontiguousarray(kernel.T, dtype=np.float32)
    b = np.ascontiguousarray(np.asarray(bias, dtype=np.float64) @ kernel, dtype=np.float32)
    lt = faiss.LinearTransform(d, k, True)
    faiss.copy_array_to_vector(A.ravel(), lt.A)
    faiss.copy_array_to_vector(b, lt.b)
    lt.is_trained = True
    with atomic_path(path) as tmp:
        faiss.write_VectorTransform(lt, str(tmp))


def load_faiss_transform(path: str | os.PathLike) -> Any:
    """Read a ``faiss.VectorTransform`` (a ``LinearTransform`` for files written here).

    A missing or unreadable file raises :class:`ConfigError` naming the path.
    """
    faiss = _import_faiss()
    if not Path(path).is_file():
        raise ConfigError(f"{path}: FAISS transform file not found")
    try:
        return faiss.read_VectorTransform(str(path))
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read FAISS transform: {exc}") from exc
