"""Save and load a fitted map (:class:`~embedkit.postprocess.affine.AffineMap`) with metadata.

Formats, chosen by the file suffix:

- ``.safetensors``: tensors ``kernel`` (d x k float32) and ``bias`` (d float32); the metadata is
  the safetensors string header -- strings are stored as they are, every other value as JSON,
  and the key ``embedkit_json_keys`` (a JSON list) names the JSON-encoded ones;
- ``.npz``: arrays ``kernel``, ``bias`` and ``metadata`` (the whole metadata dict as one JSON
  string in a numpy unicode array), readable with ``np.load(path, allow_pickle=False)``;
- ``.faiss``: a FAISS ``LinearTransform`` (``faiss.read_VectorTransform`` reads it, for an
  ``IndexPreTransform``) with the metadata in ``PATH.json`` beside it, sealed to the kernel
  file by its sha256 (``kernel_sha256``), so the two files of two exports are never mixed.

Metadata always holds ``embedkit_version``, ``d`` and ``k`` (and ``normalize: true`` for a map
followed by L2 normalisation); callers add ``model``, ``pooling`` (checked by
:func:`check_compatible`), and e.g. ``max_length``, ``spec``, ``beta``, ``gamma``,
``n_samples``, ``fit_data_sha256``.

>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> save_transform(p, AffineMap(np.eye(3)[:, :2], np.zeros(3)), {"model": "m", "beta": 1.0})
>>> t = load_transform(p)
>>> (t.d, t.k), t.metadata["beta"], t.metadata["d"], t.metadata["model"]
((3, 2), 1.0, 3, 'm')
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from embedkit.errors import ConfigError, EmbedkitError, MissingFileError
from embedkit.io.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from embedkit.io.seal import CHECKSUMS_KEY, check_values, seal_values
from embedkit.postprocess._base import LinearStep, PostprocessError
from embedkit.postprocess._base import validate_float_matrix as _validate
from embedkit.postprocess.affine import AffineMap, import_faiss
from embedkit.provenance import sha256_file

__all__ = ["TRANSFORM_FORMATS", "TransformFile", "TransformMetadata", "validate_metadata",
           "transform_metadata", "CompatibilityWarning", "save_transform", "load_transform",
           "transform_format", "FixedTransform", "check_compatible",
           "save_faiss_transform", "load_faiss_transform", "faiss_metadata_path",
           "load_faiss_metadata", "KERNEL_SEAL"]

_JSON_KEYS = "embedkit_json_keys"
#: the key of a FAISS transform's ``PATH.json`` holding the sha256 of its kernel file (a seal)
KERNEL_SEAL = "kernel_sha256"
#: file suffix -> format
TRANSFORM_FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".faiss": "faiss"}


class CompatibilityWarning(UserWarning):
    """A transform file was fitted for another model/pooling/dimension, used anyway (``force``).

    >>> issubclass(CompatibilityWarning, UserWarning)
    True
    """


class TransformMetadata(BaseModel):
    """The keys of a transform file's metadata that embedkit reads, with their types (strict:
    ``"normalize": "no"`` or ``"d": "768"`` is an error, not a truthy string); other keys are
    kept as they are. Every key may be absent (or null)."""

    model_config = ConfigDict(strict=True, extra="allow")

    embedkit_version: StrictStr | None = None
    d: StrictInt | None = None
    k: StrictInt | None = None
    normalize: StrictBool | None = None
    model: StrictStr | None = None
    model_identity: StrictStr | None = None
    model_name: StrictStr | None = None
    pooling: StrictStr | None = None
    max_length: StrictInt | None = None
    n_samples: StrictInt | None = None
    beta: float | None = None
    gamma: float | None = None
    eps: float | None = None
    lowercase: StrictBool | None = None
    fit_unique: StrictBool | None = None
    kernel_sha256: StrictStr | None = None
    quantize: dict[StrictStr, Any] | None = None  # a fitted quantiser (postprocess.quantize)
    values_sha256: dict[StrictStr, StrictStr] | None = None


#: what a failed check says the value should have been, by pydantic error type
_EXPECTED = {"bool_type": "true or false", "int_type": "an integer", "float_type": "a number",
             "string_type": "a string"}


def validate_metadata(metadata: Any, path: str | os.PathLike,
                      shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """``metadata`` checked against :class:`TransformMetadata` (and ``d``/``k`` against the
    kernel's ``shape``); :class:`ConfigError` naming the file and the key otherwise. Returns the
    metadata unchanged.

    >>> validate_metadata({"normalize": "no"}, "w.npz")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: w.npz: metadata key 'normalize' must be true or false, not 'no'
    >>> validate_metadata({"d": 3, "k": 3}, "w.npz", (3, 2))
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: w.npz: metadata key 'k' is 3 but the kernel is 3 x 2 (d x k)
    """
    if not isinstance(metadata, dict):
        raise ConfigError(f"{path}: the metadata is not a JSON object "
                          f"({type(metadata).__name__})")
    try:
        TransformMetadata.model_validate(metadata)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        expected = _EXPECTED.get(err["type"], err["msg"])
        hint = ""
        if isinstance(err["input"], str) and str(path).endswith(".safetensors"):
            hint = (f" (the safetensors header holds strings: name the JSON-encoded keys in "
                    f"{_JSON_KEYS!r})")
        raise ConfigError(f"{path}: metadata key {key!r} must be {expected}, not "
                          f"{err['input']!r}{hint}") from None
    if shape is not None:
        for key, actual in zip(("d", "k"), shape, strict=True):
            if metadata.get(key) is not None and metadata[key] != actual:
                raise ConfigError(f"{path}: metadata key {key!r} is {metadata[key]} but the "
                                  f"kernel is {shape[0]} x {shape[1]} (d x k)")
    return metadata


@dataclass(frozen=True)
class TransformFile:
    """A transform file as read: its :class:`AffineMap`, metadata and source path (in use, as a
    post-processor with its sha256 and source, it is a :class:`~embedkit.store.fitted.FittedPost`:
    :func:`~embedkit.store.fitted.fitted_post`).

    ``map.normalize`` is the metadata's ``normalize``. ``kernel``/``bias`` are the stored
    float32 arrays.

    >>> t = TransformFile(AffineMap(np.eye(2), np.ones(2)), {"d": 2})
    >>> t.d, t.k, t.apply(np.zeros((1, 2))).tolist()
    (2, 2, [[1.0, 1.0]])
    """

    map: AffineMap
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.map.d

    @property
    def k(self) -> int:
        """Output dimension."""
        return self.map.k

    @property
    def kernel(self) -> np.ndarray:
        """The stored kernel (d x k float32)."""
        return self.map.float32()[0]

    @property
    def bias(self) -> np.ndarray:
        """The stored bias (d float32)."""
        return self.map.float32()[1]

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``map.apply(X)``: float64, L2-normalised when the metadata says ``normalize``."""
        return self.map.apply(X)


def transform_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format of a transform file: ``format`` if given (it must agree with a known suffix),
    else by suffix (safetensors when the suffix is none of .safetensors, .npz, .faiss).

    >>> transform_format("w.npz"), transform_format("w.bin"), transform_format("w", "faiss")
    ('npz', 'safetensors', 'faiss')
    """
    path = Path(path)
    by_suffix = TRANSFORM_FORMATS.get(path.suffix.lower())
    if format is None:
        return by_suffix or "safetensors"
    if format not in TRANSFORM_FORMATS.values():
        raise ConfigError(f"unknown transform format {format!r}; valid: "
                          f"{', '.join(TRANSFORM_FORMATS.values())}", param="format")
    if by_suffix is not None and by_suffix != format:
        raise ConfigError(
            f"{path}: the suffix {path.suffix!r} says {by_suffix} but format={format!r} was "
            "asked; load_transform chooses the format by suffix, so make them agree",
            param="format",
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


def transform_metadata(path: str | os.PathLike, amap: AffineMap,
                       metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata :func:`save_transform` stores: ``embedkit_version`` first, the caller's
    keys (JSON-safe), ``normalize: true`` for a normalising map, then ``d`` and ``k``.

    >>> transform_metadata("w.npz", AffineMap(np.eye(2), np.zeros(2)), {"model": "m"})
    {'embedkit_version': '0.1.0', 'model': 'm', 'd': 2, 'k': 2}
    """
    from embedkit import __version__

    path = Path(path)
    meta = {str(key): _json_safe(v) for key, v in (metadata or {}).items()}
    for key, expected in (("d", amap.d), ("k", amap.k)):
        if key in meta and int(meta[key]) != expected:
            raise ConfigError(
                f"{path}: metadata says {key}={meta[key]} but the kernel is {amap.d} x {amap.k}"
            )
    meta.pop(_JSON_KEYS, None)
    meta.pop(KERNEL_SEAL, None)  # the seal of the file it came from, not of this one
    if amap.normalize:
        meta["normalize"] = True
    meta = {"embedkit_version": __version__, **meta, "d": amap.d, "k": amap.k}
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: metadata is not JSON-serialisable: {exc}") from exc
    return validate_metadata(meta, path)  # write nothing that would not load


def save_transform(
    path: str | os.PathLike,
    amap: AffineMap,
    metadata: dict[str, Any] | None = None,
    format: str | None = None,
) -> None:
    """Write ``amap`` (as float32) with ``metadata``, atomically.

    ``format`` is "safetensors", "npz" or "faiss"; by default it follows the suffix
    (:func:`transform_format`). ``embedkit_version``, ``d`` and ``k`` are added to the
    metadata, and ``normalize: true`` when ``amap.normalize``.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_transform(p, AffineMap(np.ones((2, 1)), np.zeros(2)), {"pooling": "mean"})
    >>> sorted(json.loads(str(np.load(p, allow_pickle=False)["metadata"])))
    ['d', 'embedkit_version', 'k', 'pooling']
    """
    path = Path(path)
    fmt = transform_format(path, format)
    if not isinstance(amap, AffineMap):
        raise ConfigError(f"{path}: save_transform takes an AffineMap, not {type(amap).__name__}")
    meta = transform_metadata(path, amap, metadata)
    if fmt == "faiss":
        save_faiss_transform(path, amap, meta)
    elif fmt == "safetensors":
        _save_safetensors(path, amap, meta)
    else:
        kernel32, bias32 = amap.float32()
        text = np.array(json.dumps(meta, ensure_ascii=False))  # 0-d unicode array, no pickle
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            # A file object, so numpy does not append ".npz" to the temporary name.
            np.savez(fh, kernel=kernel32, bias=bias32, metadata=text)


def _save_safetensors(path: Path, amap: AffineMap, meta: dict[str, Any]) -> None:
    from safetensors.numpy import save

    kernel32, bias32 = amap.float32()
    header = {}
    json_keys = []
    for key, v in meta.items():
        if isinstance(v, str):
            header[key] = v
        else:
            header[key] = json.dumps(v, ensure_ascii=False)
            json_keys.append(key)
    header[_JSON_KEYS] = json.dumps(json_keys)
    # bytes through the atomic writer: safetensors' own save_file makes the file 0600 whatever
    # the umask, where every other output is an ordinary file (0644 under umask 022)
    atomic_write_bytes(path, save({"kernel": kernel32, "bias": bias32}, metadata=header))


#: What ``load_transform`` (and so ``file:PATH``) reads, for error messages.
_TAKES = ("it reads safetensors and .npz files written by embedkit whiten or save_transform, "
          "and FAISS VectorTransform files (.faiss, any name: the format is read from the bytes)")


def sniff_format(path: str | os.PathLike) -> str | None:
    """The format of a transform file from its first bytes: ``npz`` (a zip), ``safetensors``
    (an 8-byte header length, then ``{``), ``faiss`` (a FAISS VectorTransform's four-letter
    code, e.g. ``LTra``), else None.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "w.bin")
    >>> _ = open(p, "wb").write(b"LTra" + bytes(8))
    >>> sniff_format(p)
    'faiss'
    """
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:2] == b"PK":
        return "npz"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    if len(head) >= 4 and head[:4].isalpha() and head[:4].isascii():
        return "faiss"
    return None


def load_transform(path: str | os.PathLike) -> TransformFile:
    """Read a file written by :func:`save_transform` (format by suffix: .safetensors, .npz,
    .faiss; other suffixes are sniffed as npz or safetensors).

    A missing, corrupt or malformed file raises :class:`ConfigError` naming the path.

    >>> load_transform("/nonexistent/w.npz")
    Traceback (most recent call last):
    ...
    embedkit.errors.MissingFileError: /nonexistent/w.npz: transform file not found
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a transform file ({_TAKES}; a "
                          "sentence-transformers folder is a model: give it as the model)")
    if not path.is_file():
        raise MissingFileError("transform file not found", path=str(path))
    fmt = TRANSFORM_FORMATS.get(path.suffix.lower())
    sniffed = sniff_format(path)
    if sniffed is None:
        raise ConfigError(f"{path}: not a transform file embedkit reads ({_TAKES})")
    fmt = sniffed if fmt is None or fmt != sniffed else fmt  # the bytes win over the suffix
    try:
        if fmt == "faiss":
            kernel, bias, metadata = _read_faiss(path)
        elif fmt == "safetensors":
            kernel, bias, metadata = _read_safetensors(path)
        else:
            kernel, bias, metadata = _read_npz(path)
    except EmbedkitError:
        raise
    except Exception as exc:  # corrupt file: safetensors, zipfile, json and numpy errors
        raise ConfigError(f"{path}: cannot read transform file ({fmt}): {exc}") from exc
    shape = (int(kernel.shape[0]), int(kernel.shape[1])) if kernel.ndim == 2 else None
    validate_metadata(metadata, path, shape)
    try:
        amap = AffineMap(kernel, bias, bool(metadata.get("normalize") or False))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return TransformFile(amap, metadata, path)


def _read_safetensors(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        header = dict(fh.metadata() or {})
        names = set(fh.keys())
        if not {"kernel", "bias"} <= names:
            raise ConfigError(f"{path}: not an embedkit transform (tensors {sorted(names)}, "
                              "expected 'kernel' and 'bias')")
        kernel = fh.get_tensor("kernel")
        bias = fh.get_tensor("bias")
    json_keys = set(json.loads(header.pop(_JSON_KEYS, "[]")))
    metadata = {k: (json.loads(v) if k in json_keys else v) for k, v in header.items()}
    return kernel, bias, metadata


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    # Our own handle: np.load leaks the file it opened when the zip is corrupt.
    with open(path, "rb") as raw, np.load(raw, allow_pickle=False) as z:
        if not {"kernel", "bias"} <= set(z.files):
            raise ConfigError(f"{path}: not an embedkit transform (arrays {sorted(z.files)}, "
                              "expected 'kernel' and 'bias')")
        kernel = z["kernel"]
        bias = z["bias"]
        metadata = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
    return kernel, bias, metadata


def _read_faiss(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    faiss = import_faiss()
    raw = load_faiss_transform(path)  # kept alive: the downcast object does not own it
    vt = faiss.downcast_VectorTransform(raw)
    if not isinstance(vt, faiss.LinearTransform):
        raise ConfigError(f"{path}: not a FAISS LinearTransform ({type(vt).__name__})")
    A = faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in).astype(np.float64)
    b = faiss.vector_to_array(vt.b).astype(np.float64) if vt.have_bias else np.zeros(vt.d_out)
    kernel = A.T
    # FAISS stores y = A x + b; our bias solves bias @ kernel = b (exact: kernel has full
    # column rank for the maps written here, k <= d).
    bias = b @ np.linalg.pinv(kernel)
    return kernel, bias, load_faiss_metadata(path)


class FixedTransform(LinearStep):
    """A saved map used as a pipeline step (``file:PATH``): ``fit`` loads it, nothing is learned.

    ``transform(X) == (X + bias_) @ kernel_`` (the linear part; a ``normalize`` in the file's
    metadata is not applied: add ``norm`` to the chain); ``metadata_`` holds the file's
    metadata. ``fit`` accepts ``X=None`` (only loads); with data it checks the dimension.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.npz")
    >>> save_transform(p, AffineMap(2 * np.eye(2), np.ones(2)), {})
    >>> FixedTransform(p).fit(None).transform(np.zeros((1, 2))).tolist()
    [[2.0, 2.0]]
    """

    _parameter_constraints: dict = {"path": [str, os.PathLike, None]}

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = path

    def fit(self, X: Any = None, y: Any = None) -> FixedTransform:
        """Load the file (and check X's dimension against it); returns ``self``."""
        self._validate_params()
        if self.path is None:
            raise PostprocessError("FixedTransform: no path given (file:PATH)", param="path")
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
        self.kernel_ = np.array(t.map.kernel)
        self.bias_ = np.array(t.map.bias)
        self.metadata_ = t.metadata
        self.n_components_ = t.k
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "kernel_")


def check_compatible(
    metadata: dict[str, Any],
    *,
    model: str | None,
    pooling: str | None,
    dim: int | None,
    force: bool = False,
    vectors: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a transform fitted for another ``model``, ``pooling`` or input dimension ``d``,
    or (given ``vectors``: the settings the vectors at hand were made with, any of
    ``max_length``, ``dtype``, ``lowercase``, ``normalized``) on vectors made otherwise
    (``normalized`` is the metadata's ``fit_vectors.normalized``, false when absent).

    Arguments left ``None`` and keys missing from ``metadata`` are not checked. A mismatch raises
    :class:`ConfigError` naming both values; with ``force=True`` it is a
    :class:`CompatibilityWarning` instead.

    >>> check_compatible({"model": "a", "d": 4}, model="a", pooling="cls", dim=4)
    >>> check_compatible({"model": "a"}, model="b", pooling=None, dim=None)
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: transform file was fitted for model 'a' but is being used with model 'b'; use force=True to use it anyway
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
    problems += _vector_problems(metadata, vectors or {})
    if not problems:
        return
    message = "transform file was fitted for " + "; and for ".join(problems)
    if force:
        warnings.warn(message + " (used anyway: force=True)", CompatibilityWarning, stacklevel=2)
        return
    raise ConfigError(message + "; use force=True to use it anyway")


def _vector_problems(metadata: dict[str, Any], vectors: Mapping[str, Any]) -> list[str]:
    """What :func:`check_compatible` says of the vector settings that differ."""
    problems = []
    for key in ("max_length", "dtype", "lowercase"):
        fitted, have = metadata.get(key), vectors.get(key)
        if fitted is not None and have is not None and str(fitted) != str(have):
            problems.append(f"vectors with {key}={fitted} but is being used with vectors with "
                            f"{key}={have}")
    if vectors.get("normalized") is not None:
        fitted_norm = bool((metadata.get("fit_vectors") or {}).get("normalized", False))
        if fitted_norm != bool(vectors["normalized"]):
            def kind(normalized: bool) -> str:
                return "L2-normalised" if normalized else "raw"
            problems.append(f"{kind(fitted_norm)} vectors but is being used with "
                            f"{kind(bool(vectors['normalized']))} vectors")
    return problems


def faiss_metadata_path(path: str | os.PathLike) -> Path:
    """Where the metadata of a FAISS transform lies: ``PATH.json``.

    >>> faiss_metadata_path("out/w.faiss").name
    'w.faiss.json'
    """
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_faiss_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata written beside a FAISS transform (``{}`` when there is none); sealed to
    another kernel (:data:`KERNEL_SEAL`) it is a :class:`ConfigError`, unsealed a warning."""
    meta = faiss_metadata_path(path)
    if not meta.is_file():
        return {}
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{meta}: cannot read the transform's metadata ({e})") from None
    value = validate_metadata(value, meta)
    seal = value.get(KERNEL_SEAL)
    if seal is None:
        warnings.warn(f"{meta}: written without the sha256 of {Path(path).name}: that the two "
                      "files belong together cannot be checked; export them again to add it",
                      UserWarning, stacklevel=3)
        return value
    if Path(path).is_file() and sha256_file(path) != seal:
        raise ConfigError(f"{meta}: written with another kernel than {path} (its "
                          f"{KERNEL_SEAL} differs): the two files come from different exports "
                          "or a write stopped between them; export the transform again")
    if CHECKSUMS_KEY in value:  # a hand edit (pooling: cls) would apply it to other vectors
        check_values(meta, value, saved="the transform was exported",
                     redo="export the transform again")
    return {k: v for k, v in value.items() if k != CHECKSUMS_KEY}


def save_faiss_transform(path: str | os.PathLike, amap: AffineMap,
                         metadata: dict[str, Any] | None = None) -> None:
    """Write the linear part of ``amap`` as a ``faiss.LinearTransform``
    (:meth:`AffineMap.to_faiss`) with ``faiss.write_VectorTransform``, atomically; with
    ``metadata``, then ``PATH.json`` (:func:`faiss_metadata_path`) holding it sealed to the
    kernel file (:data:`KERNEL_SEAL`: a kill between the two is refused on load) and its values
    sealed (:func:`~embedkit.io.seal.seal_values`: a hand edit is refused naming the key).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.faiss")
    >>> save_faiss_transform(p, AffineMap(np.eye(3)[:, :2], np.ones(3)))
    >>> load_faiss_transform(p).apply(np.zeros((1, 3), dtype=np.float32)).tolist()
    [[1.0, 1.0]]
    """
    faiss = import_faiss()
    lt = amap.to_faiss()[0]
    with atomic_path(path) as tmp:
        faiss.write_VectorTransform(lt, str(tmp))
    if metadata is not None:
        atomic_write_json(faiss_metadata_path(path),
                          seal_values({**metadata, KERNEL_SEAL: sha256_file(path)}))


def load_faiss_transform(path: str | os.PathLike) -> Any:
    """Read a ``faiss.VectorTransform`` (a ``LinearTransform`` for files written here).

    A missing or unreadable file raises :class:`ConfigError` naming the path.
    """
    faiss = import_faiss()
    if not Path(path).is_file():
        raise MissingFileError("FAISS transform file not found", path=str(path))
    try:
        return faiss.read_VectorTransform(str(path))
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read FAISS transform: {exc}") from exc
