"""The ``--post`` spec language: parse it into a Pipeline, print it back, fold it into one map.

Steps (joined by ``,`` or ``+``; a token with ``:`` or a bare step name starts a new step,
``key=value`` tokens belong to the current step)::

    whiten[:beta=B,gamma=G,k=K|all,eps=E]   Whitening (defaults beta=1, gamma=1, k=all)
    pca[:k=K|all,whiten=0|1]                PCA
    rp[:k=K|auto,kind=gaussian|sparse,seed=S,eps=E]   RandomProjection
    norm                                    L2 normalisation (last step only, for affine_of)
    file:PATH                               a map saved by save_transform (FixedTransform)

A ``file:`` path cannot contain ``,`` or ``+``.

>>> p = parse_post("whiten:beta=1,gamma=1,k=256,pca:k=128+norm")
>>> [name for name, _ in p.steps]
['whiten', 'pca', 'norm']
>>> describe_post(p)
'whiten:beta=1,gamma=1,k=256,pca:k=128,norm'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from embedkit.errors import ConfigError
from embedkit.postprocess.export import FixedTransform
from embedkit.postprocess.projection import PCA, Normalize, RandomProjection
from embedkit.postprocess.whitening import Whitening

__all__ = ["parse_post", "describe_post", "affine_of", "STEP_NAMES"]

_DEFAULT_EPS = 1e-6
_DEFAULT_RP_EPS = 0.1


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


def _k_all(v: str) -> int | str:
    return "all" if v.lower() == "all" else _int(v)


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


# step name -> {key: (parser, description of valid values)}
_KEYS: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "whiten": {
        "beta": (_float, "a number"),
        "gamma": (_float, "a number"),
        "k": (_k_all, "a positive integer or 'all'"),
        "eps": (_float, "a number in (0, 1)"),
    },
    "pca": {
        "k": (_k_all, "a positive integer or 'all'"),
        "whiten": (_bool, "0 or 1"),
    },
    "rp": {
        "k": (_k_auto, "a positive integer or 'auto'"),
        "kind": (_kind, "'gaussian' or 'sparse'"),
        "seed": (_seed, "a non-negative integer"),
        "eps": (_float, "a number in (0, 1)"),
    },
    "norm": {},
    "file": {},
}
STEP_NAMES: tuple[str, ...] = tuple(_KEYS)
_SPLIT = re.compile(r",|(?<![0-9][eE])\+")  # '+' of an exponent (1e+3) does not split


def _bad(msg: str, spec: str) -> ConfigError:
    return ConfigError(f"--post {spec!r}: {msg}")


def _build(name: str, args: dict[str, Any]) -> BaseEstimator:
    if name == "whiten":
        k = args.get("k", "all")
        return Whitening(
            beta=args.get("beta", 1.0),
            gamma=args.get("gamma", 1.0),
            n_components=None if k == "all" else k,
            eps=args.get("eps", _DEFAULT_EPS),
        )
    if name == "pca":
        k = args.get("k", "all")
        return PCA(n_components=None if k == "all" else k, whiten=args.get("whiten", False))
    if name == "rp":
        return RandomProjection(
            n_components=args.get("k", "auto"),
            kind=args.get("kind", "gaussian"),
            random_state=args.get("seed"),
            eps=args.get("eps", _DEFAULT_RP_EPS),
        )
    if name == "norm":
        return Normalize()
    return FixedTransform(path=args["path"])


def parse_post(spec: str) -> Pipeline:
    """Parse a ``--post`` spec into an unfitted ``sklearn.pipeline.Pipeline``.

    Step names in the pipeline are unique: ``pca``, ``pca-2``, ... Unknown steps, keys or bad
    values raise :class:`ConfigError` naming the token and listing what is valid.

    >>> parse_post("rp:k=64,seed=3").steps[0][1]
    RandomProjection(n_components=64, random_state=3)
    >>> parse_post("whiten:delta=1")
    Traceback (most recent call last):
    ...
    embedkit.errors.ConfigError: --post 'whiten:delta=1': unknown key 'delta' for step 'whiten' (in 'whiten:delta=1'); valid keys: beta, gamma, k, eps
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--post: empty spec; valid steps: {', '.join(STEP_NAMES)}")
    steps: list[tuple[str, dict[str, Any]]] = []

    def add_kv(token: str, kv: str) -> None:
        if not steps:
            raise _bad(
                f"{token!r} comes before any step; start with one of: {', '.join(STEP_NAMES)}",
                spec,
            )
        name, args = steps[-1]
        valid = _KEYS[name]
        if "=" not in kv:
            raise _bad(f"expected key=value in {token!r} for step {name!r}", spec)
        key, value = (s.strip() for s in kv.split("=", 1))
        key = key.lower()
        if key not in valid:
            listed = ", ".join(valid) if valid else "none (it takes no keys)"
            raise _bad(
                f"unknown key {key!r} for step {name!r} (in {token!r}); valid keys: {listed}", spec
            )
        if key in args:
            raise _bad(f"key {key!r} given twice for step {name!r}", spec)
        parser, expected = valid[key]
        try:
            args[key] = parser(value)
        except ValueError:
            raise _bad(
                f"bad value {value!r} for {name} key {key!r} (in {token!r}): expected {expected}",
                spec,
            ) from None

    for raw in _SPLIT.split(spec):
        token = raw.strip()
        if not token:
            continue
        if ":" in token:
            name, rest = (s.strip() for s in token.split(":", 1))
            name = name.lower()
            if name not in _KEYS:
                raise _bad(
                    f"unknown step {name!r} (in {token!r}); valid steps: {', '.join(STEP_NAMES)}",
                    spec,
                )
            if name == "file":
                if not rest:
                    raise _bad("'file:' needs a path, as in file:whiten.safetensors", spec)
                steps.append((name, {"path": rest}))
                continue
            steps.append((name, {}))
            if rest:
                add_kv(token, rest)
        elif "=" in token:
            add_kv(token, token)
        elif token.lower() in _KEYS:
            name = token.lower()
            if name == "file":
                raise _bad("'file' needs a path, as in file:whiten.safetensors", spec)
            steps.append((name, {}))
        else:
            raise _bad(f"unknown step {token!r}; valid steps: {', '.join(STEP_NAMES)}", spec)

    named: list[tuple[str, BaseEstimator]] = []
    counts: dict[str, int] = {}
    for name, args in steps:
        counts[name] = counts.get(name, 0) + 1
        label = name if counts[name] == 1 else f"{name}-{counts[name]}"
        named.append((label, _build(name, args)))
    return Pipeline(named)


def _num(v: Any) -> str:
    x = float(v)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _k(n_components: Any) -> str:
    return "all" if n_components is None or n_components == "all" else str(int(n_components))


def _steps(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]) -> list[BaseEstimator]:
    if isinstance(pipeline, Pipeline):
        items = [est for _, est in pipeline.steps]
    elif isinstance(pipeline, BaseEstimator):
        items = [pipeline]
    else:
        items = list(pipeline)
    return [
        est
        for est in items
        if est is not None and not (isinstance(est, str) and est == "passthrough")
    ]


def describe_post(pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator]) -> str:
    """The canonical spec of a pipeline of post-processing steps (round-trips via parse_post).

    >>> describe_post(Pipeline([("w", Whitening(gamma=0.5, n_components=8)), ("n", Normalize())]))
    'whiten:beta=1,gamma=0.5,k=8,norm'
    """
    parts = []
    for est in _steps(pipeline):
        if isinstance(est, PCA):
            s = f"pca:k={_k(est.n_components)}"
            if est.whiten:
                s += ",whiten=1"
            if float(est.eps) != _DEFAULT_EPS:
                raise ConfigError("describe_post: PCA with a non-default eps has no spec form")
        elif isinstance(est, Whitening):
            s = f"whiten:beta={_num(est.beta)},gamma={_num(est.gamma)},k={_k(est.n_components)}"
            if float(est.eps) != _DEFAULT_EPS:
                s += f",eps={_num(est.eps)}"
        elif isinstance(est, RandomProjection):
            s = f"rp:k={est.n_components},kind={est.kind}"
            if est.random_state is not None:
                if isinstance(est.random_state, (bool, np.random.RandomState)) or not isinstance(
                    est.random_state, (int, np.integer)
                ):
                    raise ConfigError(
                        "describe_post: only an integer random_state has a spec form (seed=S)"
                    )
                s += f",seed={int(est.random_state)}"
            if float(est.eps) != _DEFAULT_RP_EPS:
                s += f",eps={_num(est.eps)}"
        elif isinstance(est, Normalize):
            s = "norm"
        elif isinstance(est, FixedTransform):
            s = f"file:{est.path}"
        else:
            raise ConfigError(
                f"describe_post: {type(est).__name__} is not a post-processing step "
                f"({', '.join(STEP_NAMES)})"
            )
        parts.append(s)
    return ",".join(parts)


def affine_of(
    pipeline: Pipeline | BaseEstimator | Sequence[BaseEstimator],
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Fold the fitted linear steps into one map ``y = (x + bias) @ kernel``.

    Returns ``(kernel d x k, bias d, normalize)``; ``normalize`` is True when the last step is
    :class:`Normalize` (allowed only last). Each step is ``y = x K_i + b_i K_i``; the product
    ``x W + c`` is rewritten with ``bias = c @ pinv(W)``, exact when ``W`` has full column rank
    (checked: otherwise :class:`ConfigError`).

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(40, 6))
    >>> p = parse_post("whiten,pca:k=3").fit(X)
    >>> K, b, norm = affine_of(p)
    >>> bool(np.allclose((X + b) @ K, p.transform(X))), norm
    (True, False)
    """
    ests = _steps(pipeline)
    if not ests:
        raise ConfigError("affine_of: the pipeline has no steps")
    normalize = False
    for i, est in enumerate(ests):
        if isinstance(est, Normalize):
            if i != len(ests) - 1:
                raise ConfigError(
                    "affine_of: 'norm' (Normalize) is only allowed as the last step, the map "
                    "after it is not linear"
                )
            normalize = True
    linear = ests[:-1] if normalize else ests
    if not linear:
        d = getattr(ests[-1], "n_features_in_", None)
        if d is None:
            raise ConfigError("affine_of: a pipeline of only 'norm' needs fitting to know d")
        return np.eye(d), np.zeros(d), True

    maps = []
    for est in linear:
        try:
            check_is_fitted(est)
        except (NotFittedError, TypeError) as exc:
            raise ConfigError(
                f"affine_of: step {type(est).__name__} is not fitted; fit the pipeline first"
            ) from exc
        kernel = getattr(est, "kernel_", None)
        bias = getattr(est, "bias_", None)
        if kernel is None or bias is None:
            raise ConfigError(
                f"affine_of: {type(est).__name__} is not a linear step (no kernel_/bias_)"
            )
        maps.append((np.asarray(kernel, dtype=np.float64), np.asarray(bias, dtype=np.float64)))

    if len(maps) == 1:
        kernel, bias = maps[0]
        return kernel.copy(), bias.copy(), normalize

    W, b0 = maps[0]
    c = b0 @ W
    for j, (K, b) in enumerate(maps[1:], start=2):
        if W.shape[1] != K.shape[0]:
            raise ConfigError(
                f"affine_of: step {j} expects {K.shape[0]} inputs but step {j - 1} gives "
                f"{W.shape[1]}"
            )
        W = W @ K
        c = (c + b) @ K
    bias = c @ np.linalg.pinv(W)
    scale = max(1.0, float(np.abs(c).max()))
    if not np.allclose(bias @ W, c, rtol=0, atol=1e-8 * scale):
        raise ConfigError(
            "affine_of: the composed map cannot be written as (x + bias) @ kernel, its "
            f"{W.shape[0]} x {W.shape[1]} kernel does not have full column rank"
        )
    return W, bias, normalize
