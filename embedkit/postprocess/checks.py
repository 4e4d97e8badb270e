"""Check a postprocessor chain against the encoder's dimension (and the number of fit
sentences) before anything is encoded: ``whiten:k=1024`` on d=512, a saved map for another d,
or ``rp:k=auto`` whose Johnson-Lindenstrauss bound for the fit sentences exceeds d are refused
in seconds, not after minutes of encoding.

>>> check_post_chain(parse_post("whiten:k=256,rp:k=64,norm"), dim=512)
64
>>> check_post_chain(parse_post("whiten:k=1024"), dim=512)
Traceback (most recent call last):
embedkit.errors.ConfigError: post 'whiten:beta=1,gamma=1,k=1024': step 1 (whiten) keeps k=1024 dimensions, more than its input has (d=512); give k <= 512 (or k=all)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import pipeline_steps
from embedkit.postprocess.files import FixedTransform, check_compatible, load_transform
from embedkit.postprocess.projection import PCA, Normalize, RandomProjection, Truncate
from embedkit.postprocess.spec import describe_post, parse_post
from embedkit.postprocess.whitening import Whitening

__all__ = ["check_chain_files", "check_post_chain", "check_post_chains", "parse_post"]


def _kept(k: Any, d: int) -> int | None:
    """An int n_components as given; None for all (None / "all")."""
    return None if k is None or (isinstance(k, str) and k == "all") else int(k)


def _step_out(est: Any, d: int, n_fit: int | None, bad: Any) -> int | None:
    """The output dimension of one step on ``d`` inputs (None: unknown, stop checking)."""
    if isinstance(est, Truncate):
        if int(est.n_components) > d:
            bad(f"keeps k={int(est.n_components)} dimensions, more than its input has (d={d}); "
                f"give k <= {d}")
        return int(est.n_components)
    if isinstance(est, Whitening | PCA):
        k = _kept(est.n_components, d)
        if k is not None and k > d:
            bad(f"keeps k={k} dimensions, more than its input has (d={d}); give k <= {d} "
                "(or k=all)")
        return k or d
    if isinstance(est, RandomProjection):
        if isinstance(est.n_components, str):  # "auto": the JL bound for the fit sentences
            if n_fit is None:
                return None
            k = int(johnson_lindenstrauss_min_dim(n_fit, eps=est.eps))
            if k > d:
                bad(f"k=auto asks for k={k} dimensions (the Johnson-Lindenstrauss bound for "
                    f"N={n_fit} fit sentences at eps={est.eps}), more than d={d}; give an "
                    "integer k (e.g. rp:k=128)")
            return k
        return int(est.n_components)
    if isinstance(est, FixedTransform) and est.path is not None:
        t = load_transform(est.path)
        if t.d != d:
            bad(f"{est.path}: the transform expects d={t.d} input dimensions but the vectors "
                f"have {d}")
        return t.k
    if isinstance(est, Normalize):
        return d
    return None  # a step registered elsewhere: its output is not known here


def check_post_chain(pipe: Pipeline, dim: int, n_fit: int | None = None,
                     label: str | None = None) -> int | None:
    """Walk a chain's steps from the encoder's ``dim`` (and ``n_fit`` fit sentences when known)
    and raise :class:`ConfigError` (``param="post"``) at the first impossible step; returns
    the chain's output dimension (None when a step's is unknown)."""
    name = label or describe_post(pipe)
    d: int | None = int(dim)
    for i, est in enumerate(pipeline_steps(pipe), 1):
        if d is None:
            return None
        step = pipe.steps[i - 1][0] if isinstance(pipe, Pipeline) else type(est).__name__

        def bad(msg: str, i: int = i, step: str = step) -> None:
            raise ConfigError(f"post {name!r}: step {i} ({step}) {msg}", param="post")

        d = _step_out(est, d, n_fit, bad)
    return d


def check_post_chains(chains: Iterable[tuple[str, Pipeline]], dim: int,
                      n_fit: int | None = None) -> dict[str, int | None]:
    """:func:`check_post_chain` for every ``(label, pipeline)``; their output dimensions."""
    return {label: check_post_chain(pipe, dim, n_fit, label) for label, pipe in chains}


def check_chain_files(chains: Any, *, model: str | None, dim: int | None,
                      poolings: Any, force: bool = False) -> dict[str, dict]:
    """Check every ``file:`` step of ``chains`` (``(label, Pipeline)`` pairs) before any
    encoding: refuse a map fitted for another ``model`` identity, any of ``poolings`` or input
    dimension (:func:`check_compatible`; ``dim`` only for a chain's first step, the encoder's
    output; ``force`` warns). Returns ``{path: metadata}`` for the record.

    >>> from sklearn.pipeline import Pipeline
    >>> from embedkit.postprocess import Normalize
    >>> check_chain_files([("norm", Pipeline([("norm", Normalize())]))], model="m", dim=4,
    ...                   poolings=["cls"])
    {}
    """
    files: dict[str, dict] = {}
    for _, pipe in chains:
        for i, (_, est) in enumerate(pipe.steps):
            if not isinstance(est, FixedTransform) or est.path is None:
                continue
            meta = load_transform(est.path).metadata
            files[str(est.path)] = meta
            for pooling in poolings:
                try:
                    check_compatible(meta, model=model, pooling=str(pooling),
                                     dim=(dim or None) if i == 0 else None, force=force)
                except ConfigError as e:
                    raise ConfigError(f"file:{est.path}: {e}", param="post") from None
    return files
