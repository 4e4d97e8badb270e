"""``embedkit whiten`` on an encode folder: fit a whitening map on the vectors of the folder,
a shard at a time (``Whitening.partial_fit`` over :class:`~embedkit.postprocess.RunningMoments`:
memory O(d^2) plus one shard, whatever the number of rows), and export it as ``run_whiten`` does.

The model, pooling and max length come from the folder's recipe, so the exported map's metadata
names what the vectors were made with and an index or a search checks it as usual.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(200, 4))
>>> w = fit_blocks([x[:50], x[50:]])
>>> bool(np.allclose(w.kernel_, fit_blocks([x]).kernel_))
True
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkit import __version__
from embedkit.errors import ConfigError
from embedkit.experiments.whiten import (
    FIT_CHUNK,
    WhitenSettings,
    export_format,
    export_whitening,
)
from embedkit.postprocess import AffineMap, PostprocessError, Whitening, check_params
from embedkit.provenance import sha256_text
from embedkit.store.encode_folder import EncodeFolder

__all__ = ["ShardsWhitenResult", "fit_blocks", "fit_whitening_shards", "run_whiten_shards"]


@dataclass(frozen=True)
class ShardsWhitenResult:
    """What :func:`run_whiten_shards` wrote: path, format, fitted estimator, metadata."""

    path: Path
    format: str
    whitening: Whitening
    metadata: dict[str, Any]


def fit_blocks(blocks: Iterable[np.ndarray], whitening: Whitening | None = None, *,
               chunk: int = FIT_CHUNK) -> Whitening:
    """``partial_fit`` ``whitening`` (default ``Whitening()``) on each block, ``chunk`` rows at
    a time; the map is derived at the end (rank warnings and refusals come here)."""
    w = check_params(whitening if whitening is not None else Whitening())
    seen = 0
    for x in blocks:
        for start in range(0, x.shape[0], chunk):
            w.partial_fit(x[start:start + chunk])
        seen += x.shape[0]
    if seen == 0:
        raise ConfigError("no vectors to fit the whitening on", param="embeddings")
    try:
        _ = w.kernel_
    except PostprocessError as e:  # WhitenSettings calls n_components k
        raise PostprocessError(str(e), param="k" if e.param == "n_components" else e.param
                               ) from None
    return w


def _unique_rows(folder: EncodeFolder) -> Iterable[np.ndarray]:
    """Each shard's vectors, a text's repeats after its first row left out."""
    seen: set[str] = set()
    for _, texts, x in folder.shards():
        keep = []
        for i, t in enumerate(texts):
            if t not in seen:
                seen.add(t)
                keep.append(i)
        yield x[keep]


def fit_whitening_shards(embeddings: str | os.PathLike | EncodeFolder,
                         whitening: Whitening | None = None, *, unique: bool = False,
                         chunk: int = FIT_CHUNK) -> Whitening:
    """Fit ``whitening`` on every row of an encode folder (``unique``: each text once)."""
    folder = embeddings if isinstance(embeddings, EncodeFolder) else EncodeFolder.open(
        embeddings)
    w = whitening if whitening is not None else Whitening()
    k = w.n_components
    if isinstance(k, (int, np.integer)) and k > folder.dim:
        raise ConfigError(f"k={k} is larger than the vectors' dimension d={folder.dim}; use "
                          f"k <= {folder.dim} or all", param="k")
    blocks = _unique_rows(folder) if unique else (x for _, _, x in folder.shards(texts=False))
    return fit_blocks(blocks, w, chunk=chunk)


def _metadata(w: Whitening, folder: EncodeFolder, unique: bool,
              normalize: bool) -> dict[str, Any]:
    r = folder.recipe
    shards = "\n".join(str(e["sha256"]) for e in folder.manifest["shards"])
    return {
        "kind": "whitening", "beta": float(w.beta), "gamma": float(w.gamma),
        "k": int(w.n_components_),
        "k_spec": "all" if w.n_components is None else str(w.n_components_),
        "eps": float(w.eps), "model": r.model_identity, "model_name": r.model,
        "pooling": r.pooling, "max_length": int(r.max_length), "dtype": r.dtype,
        "lowercase": bool(r.lowercase), "fit_on": f"embeddings:{folder.path.resolve()}",
        "fit_unique": bool(unique), "fit_data_sha256": sha256_text(shards),
        "n_samples": int(w.n_samples_seen_), "normalize": bool(normalize),
        "fit_vectors": folder.vectors, "embedkit_version": __version__,
    }


def run_whiten_shards(embeddings: str | os.PathLike, out: str | os.PathLike,
                      settings: WhitenSettings | None = None, *, format: str | None = None,
                      command: str | None = None) -> ShardsWhitenResult:
    """Fit on the encode folder ``embeddings`` and write the map to ``out`` (safetensors, npz
    or faiss; a sentence-transformers folder needs the model: use ``run_whiten``).

    ``settings.max_length``, when given, must be the folder's (its vectors are made already).
    """
    settings = settings or WhitenSettings()
    fmt = export_format(out, format)
    if fmt == "sentence-transformers":
        raise ConfigError("whitening from embeddings exports safetensors, npz or faiss; for a "
                          "sentence-transformers folder fit from sentences", param="format")
    whitening = settings.whitening()
    folder = EncodeFolder.open(embeddings)
    if settings.max_length is not None and settings.max_length != folder.recipe.max_length:
        raise ConfigError(f"the vectors were encoded with max_length={folder.recipe.max_length}"
                          f", not {settings.max_length}", param="max_length")
    if folder.recipe.post:
        raise ConfigError(f"{folder.path} was encoded with post {folder.recipe.post!r}; its "
                          "shards hold raw vectors but a whitening fitted on them would be "
                          "applied after that post-processor: encode without it",
                          param="embeddings")
    if folder.vectors["normalized"]:
        warnings.warn(
            f"{folder.path} holds L2-normalised vectors: the whitening is fitted on them (its "
            "mean and covariance differ from the raw vectors'), so apply it to normalised "
            "vectors only; the map's metadata records fit_vectors.normalized=true",
            UserWarning, stacklevel=2)
    w = fit_whitening_shards(folder, whitening, unique=settings.fit_unique)
    meta = _metadata(w, folder, settings.fit_unique, settings.normalize)
    if command is not None:
        meta["command"] = command
    path = export_whitening(out, AffineMap(w.kernel_, w.bias_, settings.normalize), fmt,
                            metadata=meta)
    return ShardsWhitenResult(path, fmt, w, meta)
