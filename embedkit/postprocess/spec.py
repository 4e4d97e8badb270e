"""The post-processing spec language: parse it into a Pipeline, print it back, and the step
registry it consults.

Steps (joined by ``,`` or ``+``; a token with ``:`` or a bare step name starts a new step,
``key=value`` tokens belong to the current step)::

    whiten[:beta=B,gamma=G,k=K|all,eps=E]   Whitening (defaults beta=1, gamma=1, k=all)
    pca[:k=K|all,whiten=0|1]                PCA
    rp[:k=K|auto,kind=gaussian|sparse,seed=S,eps=E]   RandomProjection (default seed=0)
    truncate:k=K[,norm=0|1]                 Truncate: the first K dimensions (Matryoshka),
                                            re-normalised unless norm=0 (see Truncate)
    norm                                    L2 normalisation (last step only, for AffineMap)
    int8[:clip=C,ranges=PATH] | uint8[...]  ScalarQuantizer: per-dimension ranges fitted on
                                            the fit vectors (the C / 1-C quantiles, default
                                            min/max) or read from a saved file (last step)
    binary | ubinary                        BinaryQuantizer: packed sign bits (last step)
    pq:m=M[,nbits=B]                        ProductQuantizer: faiss PQ codes, M sub-vectors
                                            (last step; codebooks not saved in a file)
    file:PATH                               a map saved by save_transform (FixedTransform)

A ``file:`` path cannot contain ``,`` or ``+``. A new step is one call to
:func:`register_step` (or its decorator form), in the module that defines the estimator.

>>> p = parse_post("whiten:beta=1,gamma=1,k=256,pca:k=128+norm")
>>> [name for name, _ in p.steps]
['whiten', 'pca', 'norm']
>>> describe_post(p)
'whiten:beta=1,gamma=1,k=256,pca:k=128,norm'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import pipeline_steps
from embedkit.postprocess.files import TRANSFORM_FORMATS, FixedTransform, load_transform
from embedkit.postprocess.options import PostOptions
from embedkit.postprocess.projection import PCA, Normalize, RandomProjection, Truncate
from embedkit.postprocess.quantize import (
    QUANTIZE_KEY,
    BinaryQuantizer,
    ProductQuantizer,
    ScalarQuantizer,
    quantizer_from_file,
)
from embedkit.postprocess.whitening import Whitening

__all__ = ["Key", "PostOptions", "register_step", "unregister_step", "step_names",
           "parse_post", "describe_post", "resolve_post", "pipeline_learns", "random_seeds"]

_DEFAULT_EPS = 1e-6
_DEFAULT_RP_EPS = 0.1


@dataclass(frozen=True)
class Key:
    """One ``key=value`` of a step: how to parse the value, what is valid (for messages), and
    the constructor parameter it sets (default: the key itself)."""

    parse: Callable[[str], Any]
    expected: str
    param: str | None = None


@dataclass(frozen=True)
class _StepType:
    """A registered step: its spec ``name``, estimator class, keys, how to build one from the
    parsed keys, how to print one back, and whether it learns from data (``learns``)."""

    name: str
    estimator: type
    keys: Mapping[str, Key] = field(default_factory=dict)
    build: Callable[[dict[str, Any]], BaseEstimator] | None = None
    describe: Callable[[Any], str] | None = None
    learns: bool = True
    takes_path: bool = False

    def make(self, args: dict[str, Any]) -> BaseEstimator:
        if self.build is not None:
            return self.build(args)
        return self.estimator(**{self._param(k): v for k, v in args.items()})

    def _param(self, key: str) -> str:
        found = self.keys.get(key)
        return (found.param or key) if found is not None else key

    def spec_of(self, est: Any) -> str:
        if self.describe is not None:
            return self.describe(est)
        items = [f"{k}={getattr(est, key.param or k)}" for k, key in self.keys.items()
                 if getattr(est, key.param or k) is not None]
        return self.name + (":" + ",".join(items) if items else "")


_STEPS: dict[str, _StepType] = {}


def register_step(name: str, estimator: type | None = None, *,
                  keys: Mapping[str, Key] | None = None,
                  build: Callable[[dict[str, Any]], BaseEstimator] | None = None,
                  describe: Callable[[Any], str] | None = None, learns: bool = True,
                  takes_path: bool = False) -> Any:
    """Make ``name`` a step of the spec language, built as ``estimator``; returns the class
    (so it also works as a class decorator: ``@register_step("center")``).

    Without ``build`` the keys' values are passed to the constructor; without ``describe`` a
    step prints as ``name:key=value,..`` (keys whose value is None left out). ``learns=False``
    marks a step that fits nothing from data (``norm``, ``file:``).

    >>> from embedkit.postprocess import Normalize
    >>> _ = register_step("unit", Normalize, learns=False, describe=lambda est: "unit")
    >>> parse_post("unit").steps
    [('unit', Normalize())]
    >>> unregister_step("unit")
    """
    if estimator is None:
        return lambda cls: register_step(name, cls, keys=keys, build=build, describe=describe,
                                         learns=learns, takes_path=takes_path)
    name = name.lower()
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ConfigError(f"register_step: bad step name {name!r} (lower-case letters, digits, "
                          "- and _)", param="name")
    _STEPS[name] = _StepType(name, estimator, dict(keys or {}), build, describe, learns,
                            takes_path)
    return estimator


def unregister_step(name: str) -> None:
    """Remove a registered step (for tests that add a toy one)."""
    _STEPS.pop(name.lower(), None)


def step_names() -> tuple[str, ...]:
    """The registered step names, in registration order.

    >>> step_names()[:5]
    ('whiten', 'pca', 'rp', 'norm', 'file')
    """
    return tuple(_STEPS)


def _get_step(name: str) -> _StepType:
    """The registered step ``name`` (:class:`ConfigError` listing the valid ones otherwise)."""
    try:
        return _STEPS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown step {name!r}; valid steps: {', '.join(_STEPS)}",
                          param="post") from None


def _step_of(est: Any) -> _StepType:
    """The registered step of an estimator: its exact class first, then a base class."""
    for cls in type(est).__mro__:
        for step in _STEPS.values():
            if step.estimator is cls:
                return step
    raise ConfigError(f"describe_post: {type(est).__name__} is not a post-processing step "
                      f"({', '.join(_STEPS)})", param="post")


# -- value parsers of the built-in steps ------------------------------------------------------

def _float(v: str) -> float:
    x = float(v)
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _int(v: str) -> int:
    x = int(v)
    if x < 1:
        raise ValueError("not positive")
    return x


def _k_all(v: str) -> int | None:
    return None if v.lower() == "all" else _int(v)


def _k_auto(v: str) -> int | str:
    return "auto" if v.lower() == "auto" else _int(v)


def _bool(v: str) -> bool:
    low = v.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _kind(v: str) -> str:
    if v.lower() not in ("gaussian", "sparse"):
        raise ValueError("not gaussian or sparse")
    return v.lower()


def _seed(v: str) -> int:
    x = int(v)
    if x < 0:
        raise ValueError("negative")
    return x


def _num(v: Any) -> str:
    x = float(v)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _k(n_components: Any) -> str:
    return "all" if n_components is None or n_components == "all" else str(int(n_components))


# -- the built-in steps -----------------------------------------------------------------------

def _describe_whiten(est: Whitening) -> str:
    s = f"whiten:beta={_num(est.beta)},gamma={_num(est.gamma)},k={_k(est.n_components)}"
    return s + (f",eps={_num(est.eps)}" if float(est.eps) != _DEFAULT_EPS else "")


def _describe_pca(est: PCA) -> str:
    if float(est.eps) != _DEFAULT_EPS:
        raise ConfigError("describe_post: PCA with a non-default eps has no spec form")
    return f"pca:k={_k(est.n_components)}" + (",whiten=1" if est.whiten else "")


def _int_seed(est: Any) -> int:
    """The integer ``random_state`` of a random step (what ``seed=S`` says and records show)."""
    seed = est.random_state
    if isinstance(seed, (bool, np.random.RandomState)) or not isinstance(
            seed, (int, np.integer)):
        raise ConfigError(f"describe_post: {type(est).__name__}(random_state={seed!r}) has no "
                          "spec form: only an integer seed (seed=S) is reproducible")
    return int(seed)


def _describe_rp(est: RandomProjection) -> str:
    s = f"rp:k={est.n_components},kind={est.kind},seed={_int_seed(est)}"
    return s + (f",eps={_num(est.eps)}" if float(est.eps) != _DEFAULT_RP_EPS else "")


def _describe_truncate(est: Truncate) -> str:
    return f"truncate:k={int(est.n_components)}" + ("" if est.normalize else ",norm=0")


_K_ALL = Key(_k_all, "a positive integer or 'all'", "n_components")
_EPS_KEY = Key(_float, "a number in (0, 1)")
register_step("whiten", Whitening, describe=_describe_whiten, keys={
    "beta": Key(_float, "a number"), "gamma": Key(_float, "a number"), "k": _K_ALL,
    "eps": _EPS_KEY})
register_step("pca", PCA, describe=_describe_pca,
              keys={"k": _K_ALL, "whiten": Key(_bool, "0 or 1")})
register_step("rp", RandomProjection, describe=_describe_rp, keys={
    "k": Key(_k_auto, "a positive integer or 'auto'", "n_components"),
    "kind": Key(_kind, "'gaussian' or 'sparse'"),
    "seed": Key(_seed, "a non-negative integer", "random_state"), "eps": _EPS_KEY})
register_step("norm", Normalize, learns=False, describe=lambda est: "norm")
register_step("file", FixedTransform, learns=False, takes_path=True,
              describe=lambda est: f"file:{est.path}")
register_step("truncate", Truncate, learns=False, describe=_describe_truncate, keys={
    "k": Key(_int, "a positive integer", "n_components"),
    "norm": Key(_bool, "0 or 1", "normalize")})


def _clip(v: str) -> float:
    x = _float(v)
    if not 0.5 <= x <= 1.0:
        raise ValueError("out of range")
    return x


def _path(v: str) -> str:
    if not v.strip():
        raise ValueError("empty")
    return v.strip()


def _describe_scalar(est: ScalarQuantizer) -> str:
    items = ([f"clip={_num(est.clip)}"] if float(est.clip) != 1.0 else []) + (
        [f"ranges={est.ranges}"] if est.ranges is not None else [])
    return str(est.dtype) + (":" + ",".join(items) if items else "")


def _scalar(dtype: str) -> Callable[[dict[str, Any]], BaseEstimator]:
    return lambda args: ScalarQuantizer(dtype, **args)


_QUANT_KEYS = {"clip": Key(_clip, "a number in [0.5, 1] (a quantile, e.g. 0.99)"),
               "ranges": Key(_path, "a transform file written by save_quantized")}
register_step("int8", ScalarQuantizer, keys=_QUANT_KEYS, build=_scalar("int8"),
              describe=_describe_scalar)
register_step("uint8", ScalarQuantizer, keys=_QUANT_KEYS, build=_scalar("uint8"),
              describe=_describe_scalar)
register_step("binary", BinaryQuantizer, learns=False, build=lambda args: BinaryQuantizer(),
              describe=lambda est: "ubinary" if est.unsigned else "binary")
register_step("ubinary", BinaryQuantizer, learns=False,
              build=lambda args: BinaryQuantizer(unsigned=True),
              describe=lambda est: "ubinary" if est.unsigned else "binary")
register_step("pq", ProductQuantizer, keys={
    "m": Key(_int, "a positive integer dividing d"), "nbits": Key(_int, "bits per code")},
    describe=lambda est: f"pq:m={est.m}" + (f",nbits={est.nbits}" if est.nbits != 8 else ""))


# -- parsing ----------------------------------------------------------------------------------

_SPLIT = re.compile(r",|(?<![0-9][eE])\+")  # '+' of an exponent (1e+3) does not split


def _bad(msg: str, spec: str) -> ConfigError:
    return ConfigError(f"post {spec!r}: {msg}", param="post")


def _add_kv(steps: list[tuple[str, dict[str, Any]]], token: str, kv: str, spec: str) -> None:
    if not steps:
        raise _bad(f"{token!r} comes before any step; start with one of: "
                   f"{', '.join(_STEPS)}", spec)
    name, args = steps[-1]
    valid = _STEPS[name].keys
    if "=" not in kv:
        raise _bad(f"expected key=value in {token!r} for step {name!r}", spec)
    key, value = (s.strip() for s in kv.split("=", 1))
    key = key.lower()
    if key not in valid:
        listed = ", ".join(valid) if valid else "none (it takes no keys)"
        raise _bad(f"unknown key {key!r} for step {name!r} (in {token!r}); valid keys: {listed}",
                   spec)
    if key in args:
        raise _bad(f"key {key!r} given twice for step {name!r}", spec)
    try:
        args[key] = valid[key].parse(value)
    except ValueError:
        raise _bad(f"bad value {value!r} for {name} key {key!r} (in {token!r}): expected "
                   f"{valid[key].expected}", spec) from None


def _tokens(spec: str) -> list[tuple[str, dict[str, Any]]]:
    steps: list[tuple[str, dict[str, Any]]] = []
    for raw in _SPLIT.split(spec):
        token = raw.strip()
        if not token:
            continue
        head, _, rest = (s.strip() for s in token.partition(":"))
        name = head.lower()
        if ":" not in token and "=" in token:
            _add_kv(steps, token, token, spec)
            continue
        if name not in _STEPS:
            where = f" (in {token!r})" if ":" in token else ""
            raise _bad(f"unknown step {(name if ':' in token else token)!r}{where}; valid "
                       f"steps: {', '.join(_STEPS)}", spec)
        if _STEPS[name].takes_path:
            if not rest:
                raise _bad(f"{name!r} needs a path, as in {name}:whiten.safetensors", spec)
            steps.append((name, {"path": rest}))
            continue
        steps.append((name, {}))
        if rest:
            _add_kv(steps, token, rest, spec)
    return steps


def parse_post(spec: str) -> Pipeline:
    """Parse a post-processing spec into an unfitted ``sklearn.pipeline.Pipeline``.

    Step names in the pipeline are unique: ``pca``, ``pca-2``, ... Unknown steps, keys or bad
    values raise :class:`ConfigError` naming the token and listing what is valid.

    >>> parse_post("rp:k=64,seed=3").steps[0][1]
    RandomProjection(n_components=64, random_state=3)
    >>> parse_post("whiten:delta=1")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: post 'whiten:delta=1': unknown key 'delta' for step 'whiten' (in 'whiten:delta=1'); valid keys: beta, gamma, k, eps
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"post: empty spec; valid steps: {', '.join(_STEPS)}", param="post")
    named: list[tuple[str, BaseEstimator]] = []
    counts: dict[str, int] = {}
    for name, args in _tokens(spec):
        counts[name] = counts.get(name, 0) + 1
        label = name if counts[name] == 1 else f"{name}-{counts[name]}"
        named.append((label, _STEPS[name].make(args)))
    quantizers = [label for label, est in named[:-1] if getattr(est, "is_quantizer", False)]
    if quantizers:
        raise _bad(f"the quantiser {quantizers[0]!r} must be the last step (its codes are not "
                   "vectors to transform further)", spec)
    _check_quantized_files(named, spec)
    return Pipeline(named)


def _check_quantized_files(named: list[tuple[str, BaseEstimator]], spec: str) -> None:
    """Refuse ``file:PATH`` of a chain saved with its quantiser (save_quantized) unless the
    quantiser follows it (as :func:`resolve_post` writes it): the map alone would drop it."""
    for i, (_, est) in enumerate(named):
        path = getattr(est, "path", None) if isinstance(est, FixedTransform) else None
        if path is None or not Path(path).is_file():
            continue  # a missing file is reported when the chain is fitted
        try:
            kind = (load_transform(path).metadata.get(QUANTIZE_KEY) or {}).get("kind")
        except (ConfigError, AttributeError):
            continue
        after = named[i + 1:] if kind else []
        if kind and not any(getattr(e, "is_quantizer", False) for _, e in after):
            raise _bad(f"{path} holds a chain ending in a quantiser ({kind}), which file: alone "
                       "would drop; give the file alone as the post value (it resolves to the "
                       "map and its quantiser)", spec)


def describe_post(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]) -> str:
    """The canonical spec of a pipeline of post-processing steps (round-trips via parse_post).

    Each estimator is printed by the step registered for its class (an exact match first).

    >>> describe_post(Pipeline([("w", Whitening(gamma=0.5, n_components=8)), ("n", Normalize())]))
    'whiten:beta=1,gamma=0.5,k=8,norm'
    >>> describe_post(PCA(n_components=4))
    'pca:k=4'
    """
    return ",".join(_step_of(est).spec_of(est) for est in pipeline_steps(pipeline))


def random_seeds(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]
                 ) -> dict[str, int]:
    """The seed of every random step of a chain, by the step's spec (``{}`` when none is random).

    A step is random when its estimator has a ``random_state``; the seed is the one its
    ``fit`` uses, so a run record can state it.

    >>> random_seeds(parse_post("whiten:k=8,rp:k=4"))
    {'rp:k=4,kind=gaussian,seed=0': 0}
    >>> random_seeds(parse_post("rp:k=4,seed=3+norm")), random_seeds(parse_post("pca"))
    ({'rp:k=4,kind=gaussian,seed=3': 3}, {})
    """
    return {_step_of(est).spec_of(est): _int_seed(est) for est in pipeline_steps(pipeline)
            if hasattr(est, "random_state")}


def pipeline_learns(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]) -> bool:
    """True when some step learns from data (not only ``file:`` and ``norm`` steps).

    >>> pipeline_learns(parse_post("norm")), pipeline_learns(parse_post("pca,norm"))
    (False, True)
    """
    return any(_step_of(est).learns for est in pipeline_steps(pipeline))


def resolve_post(value: str) -> Pipeline:
    """A post-processing value as an unfitted Pipeline, deciding once "saved file or chain".

    A saved file is a value that ends in a transform suffix (.safetensors, .npz, .faiss) and
    holds no step separator, or a single ``file:PATH``; a bare file name gives a ``file`` step,
    followed by ``norm`` when the file's metadata says ``normalize`` (the file is read to know).
    Whether a file of that name exists is never consulted: anything else is a chain spec
    (:func:`parse_post`).

    >>> import os, tempfile
    >>> from embedkit.postprocess import AffineMap, save_transform
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_transform(path, AffineMap(np.eye(2), np.zeros(2), normalize=True))
    >>> [name for name, _ in resolve_post(path).steps]
    ['file', 'norm']
    >>> [name for name, _ in resolve_post("whiten:k=8").steps]
    ['whiten']
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("post: empty value", param="post")
    value = value.strip()
    bare = Path(value).suffix.lower() in TRANSFORM_FORMATS and not _SPLIT.search(value)
    if not bare or value.lower().startswith("file:"):
        return parse_post(value)
    steps: list[tuple[str, BaseEstimator]] = [("file", FixedTransform(path=value))]
    saved = load_transform(value)
    if saved.map.normalize:
        steps.append(("norm", Normalize()))
    if saved.metadata.get(QUANTIZE_KEY) is not None:  # a chain saved by save_quantized
        quant = quantizer_from_file(value, saved.metadata)
        steps.append((_step_of(quant).spec_of(quant).split(":")[0], quant))
    return Pipeline(steps)
