"""A fitted map and where it came from: :class:`FittedPost` (the spec, the folded
:class:`~embedkit.postprocess.AffineMap`, what it was fitted on, the transform files it was made
from, the map's sha256), the one value an index bakes in, an mteb model applies and a run
records.

:func:`prepare_post` makes one from a post value (a chain spec or a saved transform file, told
apart once by :func:`~embedkit.postprocess.resolve_post`), its files checked against the
encoder (:func:`check_fitted_on`, over :func:`~embedkit.postprocess.check_compatible`) and its
learning steps fitted; :func:`fitted_post` from what is fitted already (a chain, a map, a loaded
or saved transform file); :func:`same_post` says whether a post value names a stored one.

>>> x = np.random.default_rng(0).standard_normal((20, 4))
>>> class Enc:
...     name = path = identity = "demo"
...     def describe(self): return {"identity": "demo"}
>>> post = prepare_post("pca:k=2", encoder=Enc(), pooling="cls", dim=4,
...                     fit_data=lambda: (x, {"on": "demo", "n_sentences": 20}))
>>> post.spec, post.map.k, post.fit["on"], post.sha256 == post.map.sha256()
('pca:k=2', 2, 'demo', True)
>>> prepare_post("none", encoder=Enc(), pooling="cls", dim=4) is None
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from embedkit.encoders.models import resolve_model_path
from embedkit.errors import ConfigError, EmbedkitError
from embedkit.postprocess import (
    AffineMap,
    FixedTransform,
    TransformFile,
    check_compatible,
    describe_post,
    load_transform,
    parse_post,
    pipeline_learns,
    resolve_post,
)
from embedkit.postprocess.checks import check_post_chain
from embedkit.provenance import sha256_file

__all__ = ["FitData", "FittedPost", "check_fitted_on", "fitted_post", "is_none",
           "post_output_dim", "prepare_post", "same_post"]

#: ``() -> (vectors, {"on", "n_sentences", "sha256", ...})``: the vectors a chain is fitted on
FitData = Callable[[], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class FittedPost:
    """A fitted post-processor folded into one map, and where it came from.

    ``spec`` is the canonical chain (``file:`` paths made absolute; a label such as
    ``affine:d=4,k=2`` for a bare map), ``map`` the folded affine map, ``fit`` what a learning
    chain was fitted on (None when nothing was learned here), ``sources`` the transform files
    used (``{"path", "sha256"}``); ``sha256`` is the map's (:meth:`AffineMap.sha256`).

    >>> FittedPost("affine:d=2,k=2", AffineMap.identity(2)).sha256[:12]
    'd3ed8f490b96'
    """

    spec: str
    map: AffineMap
    fit: dict[str, Any] | None = None
    sources: tuple[dict[str, str], ...] = field(default=())

    @cached_property
    def sha256(self) -> str:
        """The map's sha256 as files store it (float32), see :meth:`AffineMap.sha256`."""
        return self.map.sha256()


def is_none(value: str | None) -> bool:
    """True for "no post-processor": None, "" or "none"."""
    return value is None or str(value).strip().lower() in ("", "none")


def _absolute_files(pipe: Pipeline) -> Pipeline:
    for _, est in pipe.steps:
        if isinstance(est, FixedTransform) and est.path is not None:
            est.set_params(path=str(Path(est.path).resolve()))
    return pipe


def _canonical(value: str) -> Pipeline:
    """The value as an unfitted pipeline whose ``file:`` steps name absolute paths."""
    return _absolute_files(resolve_post(str(value).strip()))


def post_output_dim(value: str | None, dim: int) -> int:
    """The dimension a post value leaves (``dim`` for none, or when a step's is unknown),
    after :func:`~embedkit.postprocess.checks.check_post_chain` found it possible.

    >>> post_output_dim("whiten:k=8,norm", 32), post_output_dim("none", 32)
    (8, 32)
    """
    if is_none(value):
        return int(dim)
    return check_post_chain(_canonical(str(value)), dim, label=str(value).strip()) or int(dim)


def _weights_identity(encoder: Any) -> str:
    return str(encoder.describe().get("identity") or encoder.identity)


def check_fitted_on(metadata: Mapping[str, Any], where: str, *, encoder: Any, pooling: str,
                    dim: int | None, force: bool,
                    vectors: Mapping[str, Any] | None = None) -> None:
    """Refuse a transform file fitted on other vectors than the encoder's: the one check
    (:func:`~embedkit.postprocess.check_compatible`: model, pooling, input dimension, and the
    ``vectors`` settings when given) with ``where`` (the file) in front. A file that names the
    model by name or folder (older files) instead of its identity is compared by what that
    name resolves to."""
    meta = dict(metadata)
    full = str(encoder.identity)
    if meta.get("model_identity") is not None:
        meta["model"] = meta["model_identity"]
    stored = meta.get("model")
    if stored is not None:
        path = encoder.describe().get("path") or getattr(encoder, "path", None)
        if str(stored) in (encoder.name, path, _weights_identity(encoder)) or (
                path is not None and resolve_model_path(str(stored), strict=False) == path):
            meta["model"] = full
    try:
        check_compatible(meta, model=full, pooling=str(pooling), dim=dim, force=force,
                         vectors=vectors)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", param=exc.param) from None


#: ``(metadata, where) -> metadata``: a caller's own check of a transform file's metadata
#: (e.g. fitted on vectors like an encode folder's), the metadata to check against the encoder
_CheckFile = Callable[[dict[str, Any], str], dict[str, Any]]


def _check_files(pipe: Pipeline, *, encoder: Any, pooling: str, dim: int, force: bool,
                 check_file: _CheckFile | None = None) -> tuple[dict[str, str], ...]:
    """Check every ``file:`` step against the encoder (before any fitting), ``check_file``
    first on the metadata just loaded; their sources."""
    sources = []
    for i, (_, est) in enumerate(pipe.steps):
        if not isinstance(est, FixedTransform):
            continue
        where = str(est.path)
        est.fit(None)  # loads the file: metadata_, kernel_
        meta = est.metadata_ if check_file is None else check_file(dict(est.metadata_), where)
        # the input dimension is the encoder's only for a chain's first step
        check_fitted_on(meta, where, encoder=encoder, pooling=pooling,
                        dim=dim if i == 0 else None, force=force)
        sources.append({"path": where, "sha256": sha256_file(where)})
    return tuple(sources)


def _fit_vectors(value: str, pipe: Pipeline, dim: int,
                 fit_data: FitData | None) -> tuple[np.ndarray, dict[str, Any] | None]:
    if not pipeline_learns(pipe):  # only file: and norm steps: nothing to learn
        return np.random.default_rng(0).standard_normal((2, dim)), None
    if fit_data is None:
        raise ConfigError(f"post {value!r} must be fitted but no fit data was given")
    x, info = fit_data()
    if x.shape[0] < 2:
        raise ConfigError(
            f"post {value!r}: {x.shape[0]} sentence(s) to fit on ({info.get('on')}); a "
            "postprocessor needs at least 2 (fit on a file of sentences or use a saved "
            "transform file)", param="fit_on")
    return np.asarray(x, np.float64), info


def prepare_post(
    value: str | None,
    *,
    encoder: Any,
    pooling: str,
    dim: int,
    fit_data: FitData | None = None,
    metric: str = "cosine",
    force: bool = False,
    check_file: _CheckFile | None = None,
) -> FittedPost | None:
    """Turn a post value (a chain spec or a transform file) into a :class:`FittedPost`.

    None / "none" gives None. Every saved transform file (a bare file, or ``file:`` steps of a
    chain) is checked with :func:`check_fitted_on` against the encoder's identity, ``pooling``
    and ``dim`` (``force`` turns a model or pooling mismatch into a warning). A chain with
    steps to fit (whiten, pca, rp) is fitted on ``fit_data()`` -> (vectors, description). A
    map ending in L2 normalisation (``norm``, or a file whose metadata says ``normalize``)
    needs ``metric="cosine"``. ``check_file`` (metadata, file) -> metadata is a caller's own
    check of each file, made on the metadata just loaded (no second read).
    """
    if is_none(value):
        return None
    value = str(value).strip()
    pipe = _canonical(value)
    sources = _check_files(pipe, encoder=encoder, pooling=pooling, dim=dim, force=force,
                           check_file=check_file)
    check_post_chain(pipe, dim, label=value)  # k against d, before fit_data() encodes
    x, fit_info = _fit_vectors(value, pipe, dim, fit_data)
    pipe.fit(x)
    amap = AffineMap.from_pipeline(pipe)
    if amap.normalize and metric != "cosine":
        raise ConfigError(
            f"post {value!r} ends with L2 normalisation ('norm', or a file whose metadata says "
            "normalize=true), which an index applies only with metric='cosine' (given: "
            f"{metric})", param="metric")
    return FittedPost(spec=describe_post(pipe), map=amap, fit=fit_info, sources=sources)


def fitted_post(post: Any, *, encoder: Any = None, pooling: str | None = None,
                force: bool = False) -> FittedPost | None:
    """A :class:`FittedPost` from what is fitted already: a fitted chain
    (``parse_post(...).fit(X)``) or estimator, an :class:`AffineMap`, a loaded
    :class:`~embedkit.postprocess.TransformFile` or a saved map's path; ``None`` stays None.
    Its ``spec`` is the chain's, ``file:NAME`` for a file, ``affine:d=D,k=K`` for a bare map.
    An unfitted or non-linear chain is a :class:`ConfigError` (``param="post"``): nothing is
    fitted here. Given the ``encoder`` (and ``pooling``, default its own), a file is checked
    against them (:func:`check_fitted_on`; ``force`` warns instead).

    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> fitted_post(parse_post("whiten:k=2").fit(X)).spec
    'whiten:beta=1,gamma=1,k=2'
    >>> fitted_post(parse_post("whiten:k=2"))
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: AffineMap.from_pipeline: step Whitening is not fitted; fit the pipeline first
    """
    if post is None:
        return None
    if isinstance(post, (str, os.PathLike)):
        post = load_transform(post)
    if isinstance(post, TransformFile):
        if post.metadata.get("quantize"):  # its linear map alone would drop the quantiser
            raise ConfigError(
                f"{post.path or 'map'} ends in a quantiser ({post.metadata['quantize'].get('kind', 'int8')}"
                "), which is not a linear map: score it as a bench post chain (on its codes) "
                "or save the map without the quantiser", param="post")
        if encoder is not None:
            _check_loaded(post, encoder, pooling, force)
        if post.path is None:
            return FittedPost("file:map", post.map)
        return FittedPost(f"file:{post.path.name}", post.map, sources=(
            {"path": str(post.path), "sha256": sha256_file(post.path)},))
    if isinstance(post, AffineMap):
        return FittedPost(f"affine:d={post.d},k={post.k}", post)
    try:
        amap = AffineMap.from_pipeline(post)
    except ConfigError as e:
        raise ConfigError(str(e), param="post") from None
    return FittedPost(describe_post(post), amap)


def _check_loaded(post: TransformFile, encoder: Any, pooling: str | None, force: bool) -> None:
    try:
        check_fitted_on(post.metadata, str(post.path or "map"), encoder=encoder,
                        pooling=str(pooling or encoder.default_pooling),
                        dim=getattr(encoder, "dim", None) or None, force=force)
    except ConfigError as e:
        raise ConfigError(str(e), param="post") from None


def _signature(pipe: Pipeline, file_sha: Callable[[str], str | None]) -> list[str | None]:
    """The steps of a chain with each ``file:`` step stood for by its content's sha256."""
    return [f"file:{file_sha(str(est.path))}" if isinstance(est, FixedTransform)
            else describe_post(est) for _, est in pipe.steps]


def same_post(value: str, stored: str | None, *, post_sha256: str | None = None,
              sources: tuple[Mapping[str, str], ...] = ()) -> bool:
    """Does the post value name the stored post-processor (``stored`` spec, its exported
    file's ``post_sha256`` and the transform files ``sources`` it was made from)?

    Spelled differently is the same (``whiten`` = ``whiten:beta=1,gamma=1``); transform files
    are compared by content.

    >>> same_post("whiten:k=8", "whiten:beta=1,gamma=1,k=8"), same_post("none", None)
    (True, True)
    """
    if is_none(value):
        return stored is None
    if stored is None:
        return False
    if value.strip() == stored:
        return True
    try:
        pipe = _canonical(value)
    except EmbedkitError:
        return False
    shas = {str(Path(s["path"])): s["sha256"] for s in sources}

    def value_sha(path: str) -> str | None:
        return sha256_file(path) if Path(path).is_file() else None

    mine = _signature(pipe, value_sha)
    if post_sha256 is not None and mine in ([f"file:{post_sha256}"],
                                            [f"file:{post_sha256}", "norm"]):
        return True  # the index's own exported post.safetensors
    return mine == _signature(parse_post(stored), shas.get)
