"""``embedkit whiten``: fit a whitening map on an encoder's vectors of chosen sentences, record
how, and export it.

The sentences come from :func:`~embedkit.data.selection.collect_fit_sentences` (``TASK``,
``TASK:SPLIT``, several, or a file); :func:`fit_whitening` encodes and fits them in chunks
(float64 moments); :func:`whitening_metadata` records how; :func:`export_whitening` writes
safetensors / npz / FAISS (:func:`~embedkit.postprocess.save_transform`, the FAISS metadata in
``OUT.json`` beside it) or a sentence-transformers folder
(:func:`~embedkit.encoders.st_folder.save_st_folder`). :func:`run_whiten` does all of it.

>>> export_format("w.npz", None), export_format("model", "sentence-transformers")
('npz', 'sentence-transformers')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit import __version__
from embedkit.data.selection import FitSentences, collect_fit_sentences
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.models import hub_id
from embedkit.encoders.st_folder import save_st_folder, st_pooling_mode
from embedkit.errors import ConfigError
from embedkit.evaluation import get_protocol
from embedkit.experiments.bench import DataOptions
from embedkit.io.model_card import CardInfo, card_name, read_base_license, render_model_card
from embedkit.postprocess import (
    AffineMap,
    PostprocessError,
    Whitening,
    check_params,
    describe_post,
    save_transform,
)
from embedkit.postprocess.files import save_faiss_transform, transform_metadata
from embedkit.postprocess.spec import PostOptions

__all__ = ["EXPORT_FORMATS", "FIT_CHUNK", "WhitenSettings", "WhitenResult", "run_whiten",
           "fit_whitening", "whitening_metadata", "export_whitening", "export_format",
           "whitening_card"]

EXPORT_FORMATS = ("safetensors", "npz", "sentence-transformers", "faiss")
#: Distinct sentences encoded between two partial fits (bounds memory whatever the data size).
FIT_CHUNK = 8192
_SUFFIX_FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".faiss": "faiss"}


@dataclass(frozen=True)
class WhitenSettings:
    """The map (``beta``, ``gamma``, ``k``: a positive integer, or None/"all" for every
    dimension; ``eps``), how it is fitted (``post``: its ``fit_unique``, unique sentences
    instead of every occurrence; the sentences themselves are ``run_whiten``'s ``fit_on``;
    ``max_length``: None follows the ``protocol``, i.e. the tasks' own, 64 for
    files) and whether its output is L2-normalised (``normalize``)."""

    beta: float = 1.0
    gamma: float = 1.0
    k: int | str | None = None
    eps: float = 1e-6
    post: PostOptions = field(default_factory=PostOptions)
    max_length: int | None = None
    protocol: str = "whitening"
    normalize: bool = False

    @property
    def fit_unique(self) -> bool:
        """``post.fit_unique``: unique sentences (or vectors) instead of every occurrence."""
        return self.post.fit_unique

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 3:
            raise ConfigError("max_length must be at least 3 ([CLS], one token, [SEP])",
                              param="max_length")

    @property
    def n_components(self) -> int | None:
        """``k`` as Whitening's ``n_components`` (None for every dimension)."""
        k = self.k
        if k is None or (isinstance(k, str) and k.lower() == "all"):
            return None
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k {k!r}: expected a positive integer or 'all'", param="k")
        return int(k)

    def whitening(self) -> Whitening:
        """The unfitted estimator, its parameters checked."""
        return check_params(Whitening(beta=self.beta, gamma=self.gamma,
                                      n_components=self.n_components, eps=self.eps))


@dataclass(frozen=True)
class WhitenResult:
    """What :func:`run_whiten` wrote: the path, format, fitted estimator, metadata, the fit
    sentences, the pooling and max length used, and the encoder's name."""

    path: Path
    format: str
    whitening: Whitening
    metadata: dict[str, Any]
    fit: FitSentences
    pooling: str
    max_length: int
    encoder_name: str

    @property
    def spec(self) -> str:
        """The map as a post-processing spec (``,norm`` when normalised)."""
        return describe_post(self.whitening) + (",norm" if self.metadata.get("normalize") else "")


def fit_whitening(encoder: SentenceEncoder, pooling: str, sentences: Sequence[str],
                  whitening: Whitening | None = None, *, max_length: int = 64,
                  chunk: int = FIT_CHUNK) -> Whitening:
    """Encode ``sentences`` and fit ``whitening`` (default ``Whitening()``) on their vectors.

    Every occurrence counts (pass unique sentences for unique fitting). Distinct sentences are
    encoded ``chunk`` at a time and their rows repeated by their counts into ``partial_fit``, so
    memory stays bounded and each sentence is encoded once; the moments equal one ``fit`` on
    all vectors (up to float64 rounding).
    """
    w = check_params(whitening if whitening is not None else Whitening())
    sentences = list(sentences)
    if not sentences:
        raise ConfigError("no sentences to fit the whitening on", param="fit_on")
    n_components = w.n_components
    if isinstance(n_components, (int, np.integer)) and encoder.dim and n_components > encoder.dim:
        raise ConfigError(f"k={n_components} is larger than the model's dimension "
                          f"d={encoder.dim}; use k <= {encoder.dim} or all", param="k")
    counts: dict[str, int] = {}
    for s in sentences:
        counts[s] = counts.get(s, 0) + 1
    unique = list(counts)
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        vecs = encoder.encode(part, pooling, max_length=max_length)
        reps = np.fromiter((counts[s] for s in part), dtype=np.int64, count=len(part))
        w.partial_fit(np.repeat(vecs, reps, axis=0) if reps.max() > 1 else vecs)
    try:
        _ = w.kernel_  # derive now, so that rank warnings (and refusals) come at fit time
    except PostprocessError as e:  # WhitenSettings calls n_components k
        param = "k" if e.param == "n_components" else e.param
        raise PostprocessError(str(e), param=param) from None
    return w


def whitening_metadata(whitening: Whitening, encoder: SentenceEncoder, pooling: str,
                       max_length: int, fit: FitSentences, *, normalize: bool = False
                       ) -> dict[str, Any]:
    """The metadata stored with an exported whitening map (checked when it is loaded)."""
    described = encoder.describe()
    return {
        "kind": "whitening",
        "beta": float(whitening.beta),
        "gamma": float(whitening.gamma),
        "k": int(whitening.n_components_),
        "k_spec": "all" if whitening.n_components is None else str(whitening.n_components_),
        "eps": float(whitening.eps),
        "model": encoder.identity,
        "model_name": encoder.name,
        "pooling": str(pooling),
        "max_length": int(max_length),
        "dtype": described.get("dtype", "float32"),
        "lowercase": bool(described.get("lowercase", False)),
        "fit_on": fit.description,
        "fit_unique": bool(fit.unique),
        "fit_data_sha256": fit.sha256,
        "n_samples": int(whitening.n_samples_seen_),
        "normalize": bool(normalize),
        "embedkit_version": __version__,
    }


def export_format(out: str | os.PathLike, fmt: str | None) -> str:
    """The export format: ``fmt`` if given (checked against a known suffix), else by suffix
    (``.npz``, ``.faiss``; anything else safetensors)."""
    suffix_fmt = _SUFFIX_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        return suffix_fmt or "safetensors"
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"format {fmt!r}: valid formats: {', '.join(EXPORT_FORMATS)}",
                          param="format")
    if suffix_fmt is not None and fmt != suffix_fmt and fmt != "faiss":
        raise ConfigError(f"out {str(out)!r} has the suffix {Path(out).suffix!r} (for "
                          f"{suffix_fmt}) but the format is {fmt}; make them agree",
                          param="format")
    return fmt


def export_whitening(out: str | os.PathLike, amap: AffineMap, fmt: str, *,
                     metadata: dict[str, Any], encoder: SentenceEncoder | None = None,
                     pooling: str | None = None, max_length: int | None = None,
                     threshold: dict[str, Any] | None = None) -> Path:
    """Write the fitted map to ``out`` in ``fmt``; returns the path.

    - ``safetensors`` / ``npz``: :func:`~embedkit.postprocess.save_transform` with ``metadata``
      (``normalize`` is recorded there; the consumer applies it);
    - ``faiss``: a ``faiss.LinearTransform`` plus ``OUT.json`` holding ``metadata``;
    - ``sentence-transformers``: a model folder (needs ``encoder``, ``pooling`` and
      ``max_length``): Transformer + Pooling + Dense [+ Normalize], with
      ``embedkit_whitening.json`` holding ``metadata`` (and, given a calibrated ``threshold``,
      ``embedkit_threshold.json`` and a section of the card). Written atomically.
    """
    out = Path(out)
    fmt = export_format(out, fmt)
    meta = {**metadata, "normalize": amap.normalize}
    if fmt in ("safetensors", "npz"):
        save_transform(out, amap, meta, format=fmt)
    elif fmt == "faiss":
        save_faiss_transform(out, amap, transform_metadata(out, amap, meta))
    else:
        if encoder is None or pooling is None or max_length is None:
            raise ConfigError("the sentence-transformers format needs the encoder, pooling and "
                              "max_length", param="format")
        described = encoder.describe()
        save_st_folder(out, described["path"], pooling=pooling, max_seq_length=max_length,
                       lowercase=bool(described.get("lowercase", False)), kernel=amap.kernel,
                       bias=amap.bias, normalize=amap.normalize,
                       json_files={"embedkit_whitening.json": {**meta, "d": amap.d,
                                                               "k": amap.k},
                                   **({"embedkit_threshold.json": threshold}
                                      if threshold else {})},
                       card=render_model_card(replace(whitening_card(meta, amap, encoder),
                                                      threshold=threshold)))
    return out


def whitening_card(meta: dict[str, Any], amap: AffineMap, encoder: SentenceEncoder) -> CardInfo:
    """The model card of a sentence-transformers export: the base model and its licence (read
    from the model's folder), pooling, the map, what it was fitted on, the embedkit version."""
    given = str(meta.get("model_name") or encoder.name)
    folder = encoder.describe().get("path")
    hub, name = hub_id(given), card_name(given)  # a local folder by its name, not its path
    spec = (f"whiten:beta={meta['beta']:g},gamma={meta['gamma']:g},k={meta['k_spec']}"
            + (",norm" if amap.normalize else ""))
    occurrences = "unique sentences" if meta.get("fit_unique") else "every occurrence"
    fit = (f"{card_name(str(meta['fit_on']))} ({meta['n_samples']} vectors, {occurrences}; sentences sha256 "
           f"`{str(meta['fit_data_sha256'])[:16]}`)")
    return CardInfo(
        title=f"{name} + whitening ({spec})", base_name=name, base_model=hub,
        license=read_base_license(folder if folder and Path(folder).is_dir() else None, name,
                                  hub),
        summary=(f"{name} with a fitted BERT-whitening map (d={amap.d} -> k={amap.k}) as a "
                 "Dense layer, written by embedkit as a sentence-transformers model."),
        pooling=str(meta["pooling"]), postprocessor=f"{spec} (output dimension {amap.k})",
        fit_data=fit, details=[("Max length", str(meta["max_length"])),
                               ("Base model identity", f"`{meta['model']}`")],
        tags=("embedkit", "sentence-transformers", "sentence-similarity", "whitening"),
        usage="from sentence_transformers import SentenceTransformer\n\n"
              "model = SentenceTransformer(\"PATH/TO/THIS/FOLDER\")\n"
              "vectors = model.encode([\"一个人在弹吉他。\"])",
        embedkit_version=str(meta.get("embedkit_version") or __version__))


def calibrate_threshold(enc: SentenceEncoder, pooling: Pooling, amap: AffineMap, task: str,
                        max_length: int, data: DataOptions) -> dict[str, Any]:
    """The cosine threshold of the whitened vectors on a binary task: chosen for the best
    accuracy on its selection split (``valid``; AFQMC: ``train``), reported on its default
    split (``test``) with the best-F1 threshold and average precision."""
    from embedkit.data import get_task, load_split
    from embedkit.evaluation.classification import calibrated_scores, pair_similarities
    from embedkit.experiments.pair_extras import selection_split

    spec = get_task(task)
    if not spec.is_binary:
        raise ConfigError(f"task {spec.name} has no 0/1 labels; a threshold is calibrated on a "
                          "binary task (ATEC, BQ, LCQMC, PAWSX, AFQMC)", param="calibrate")
    evaluated = spec.default_splits[0]
    sel = selection_split(spec, evaluated)
    if sel is None:
        raise ConfigError(f"task {spec.name} has no second split to choose the threshold on",
                          param="calibrate")
    cos = {}
    splits = {}
    for name in (sel, evaluated):
        s = load_split(spec, name, data_dir=data.data_dir, source=data.source,
                       skip_invalid=data.skip_invalid)
        e1 = amap.apply(enc.encode(s.sentences1, pooling, max_length=max_length))
        e2 = amap.apply(enc.encode(s.sentences2, pooling, max_length=max_length))
        cos[name], splits[name] = pair_similarities(e1, e2)["cosine"], s
    c = calibrated_scores((cos[sel], splits[sel].labels), (cos[evaluated],
                                                           splits[evaluated].labels))
    return {"task": spec.name, "similarity": "cosine", "selected_on": sel,
            "evaluated_on": evaluated, "n_pairs": splits[evaluated].n_pairs,
            "threshold": c["accuracy_threshold"], "accuracy": c["accuracy"],
            "f1_threshold": c["f1_threshold"], "f1": c["f1"], "precision": c["precision"],
            "recall": c["recall"], "ap": c["ap"],
            "rule": "a pair is a duplicate when cosine(u, v) > threshold"}


def run_whiten(encoder: SentenceEncoder | EncoderConfig | str, fit_on: str,
               out: str | os.PathLike, settings: WhitenSettings | None = None, *,
               pooling: str | None = None, format: str | None = None,
               data: DataOptions | None = None, command: str | None = None,
               calibrate: str | None = None) -> WhitenResult:
    """Collect the ``fit_on`` sentences, encode them, fit the map, write it; what was written.

    Settings and the format are checked before anything is loaded or encoded.
    """
    settings = settings or WhitenSettings()
    data = data or DataOptions()
    fmt = export_format(out, format)
    whitening = settings.whitening()
    if pooling is not None and fmt == "sentence-transformers":
        st_pooling_mode(pooling)  # fail before loading anything
    fit = collect_fit_sentences(fit_on, data_dir=data.data_dir, source=data.source,
                                skip_invalid=data.skip_invalid, unique=settings.fit_unique)
    enc = as_encoder(encoder)
    pool = Pooling(pooling) if pooling is not None else Pooling(enc.default_pooling)
    if fmt == "sentence-transformers":
        st_pooling_mode(pool)
    proto = get_protocol(settings.protocol)
    model_max = enc.model_max_length()
    wanted = settings.max_length or (model_max if proto.use_model_max_length else fit.max_length)
    max_length = min(int(wanted), model_max)
    w = fit_whitening(enc, pool, fit.sentences, whitening, max_length=max_length)
    meta = whitening_metadata(w, enc, pool, max_length, fit, normalize=settings.normalize)
    if command is not None:
        meta["command"] = command
    amap = AffineMap(w.kernel_, w.bias_, settings.normalize)
    threshold = (calibrate_threshold(enc, pool, amap, calibrate, max_length, data)
                 if calibrate else None)
    if threshold:
        meta["threshold"] = threshold
    path = export_whitening(out, amap, fmt, metadata=meta, encoder=enc, pooling=pool,
                            max_length=max_length, threshold=threshold)
    return WhitenResult(path, fmt, w, meta, fit, str(pool), max_length, enc.name)
