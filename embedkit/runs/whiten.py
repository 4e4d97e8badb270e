"""``embedkit whiten``: fit a whitening map on vectors, record how, and export it.

One runner over a source of vector batches, ``partial_fit`` per batch (float64 moments: memory
O(d^2) plus one batch, whatever the number of rows):

- :class:`_SentenceSource`: an encoder over the sentences chosen by
  :func:`~embedkit.data.selection.collect_fit_sentences` (``TASK``, ``TASK:SPLIT``, several, or a
  file), encoded in chunks of distinct sentences;
- :class:`_FolderSource`: an encode folder's shards (its ``embeddings`` argument); the model,
  pooling and max length come from its recipe, so the map's metadata names what the vectors
  were made with and an index or a search checks it as usual.

:func:`_fit_source` fits; :func:`_whitening_metadata` records how; :func:`_export_whitening` writes
safetensors / npz / FAISS (:func:`~embedkit.postprocess.save_transform`, the FAISS metadata in
``OUT.json`` beside it) or a sentence-transformers folder
(:func:`~embedkit.encoders.st_folder.save_st_folder`). :func:`run_whiten` does all of it.

>>> export_format("w.npz", None), export_format("model", "sentence-transformers")
('npz', 'sentence-transformers')
>>> x = np.random.default_rng(0).normal(size=(200, 4))
>>> w = _fit_blocks([x[:50], x[50:]])
>>> bool(np.allclose(w.kernel_, _fit_blocks([x]).kernel_))
True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from embedkit import __version__
from embedkit.aliases import StrPath
from embedkit.data.selection import FitSentences, collect_fit_sentences
from embedkit.encoders import EncoderConfig, Pooling, SentenceEncoder, as_encoder
from embedkit.encoders.model_card import CardInfo, card_name, read_base_license, render_model_card
from embedkit.encoders.models import hub_id
from embedkit.encoders.st_folder import STFolderSettings, save_st_folder, st_pooling_mode
from embedkit.errors import ConfigError
from embedkit.evaluation import get_protocol
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
from embedkit.provenance import sha256_text
from embedkit.runs.bench import DataOptions
from embedkit.store.encode_folder import EncodeFolder

__all__ = ["WhitenSettings", "VectorSource", "run_whiten",
           "fit_whitening", "fit_whitening_shards",
           "export_format"]

_EXPORT_FORMATS = ("safetensors", "npz", "sentence-transformers", "faiss")
#: Rows (distinct sentences, or an encode folder's rows) per partial fit (bounds memory whatever
#: the data size).
_FIT_CHUNK = 8192
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


class VectorSource(Protocol):
    """What the runner fits on: batches of vectors and what made them.

    ``param`` names the option at fault when there is nothing to fit, ``what`` the rows
    (``sentences``, ``vectors``), ``dim_of`` whose dimension ``dim`` is; ``fields()`` the
    metadata keys saying what the vectors are (model, pooling, max length, dtype, casing, fit
    data), ``extra()`` the keys recorded after them.
    """

    param: ClassVar[str]
    what: ClassVar[str]
    dim_of: ClassVar[str]

    @property
    def dim(self) -> int | None: ...

    @property
    def n_rows(self) -> int: ...

    def batches(self) -> Iterator[np.ndarray]: ...

    def fields(self) -> dict[str, Any]: ...

    def extra(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _SentenceSource:
    """An encoder over the fit sentences: distinct sentences are encoded ``chunk`` at a time and
    their rows repeated by their counts (every occurrence counts; pass unique sentences for
    unique fitting), so each sentence is encoded once."""

    encoder: SentenceEncoder
    pooling: Pooling
    fit: FitSentences
    max_length: int = 64
    chunk: int = _FIT_CHUNK
    param: ClassVar[str] = "fit_on"
    what: ClassVar[str] = "sentences"
    dim_of: ClassVar[str] = "the model's dimension"

    @property
    def dim(self) -> int | None:
        """The encoder's output dimension (None when unknown)."""
        return self.encoder.dim or None

    @property
    def n_rows(self) -> int:
        """The sentences' count (every occurrence)."""
        return len(self.fit.sentences)

    def batches(self) -> Iterator[np.ndarray]:
        """The vectors, one batch per chunk of distinct sentences, rows repeated by count."""
        counts: dict[str, int] = {}
        for s in self.fit.sentences:
            counts[s] = counts.get(s, 0) + 1
        unique = list(counts)
        for start in range(0, len(unique), self.chunk):
            part = unique[start:start + self.chunk]
            vecs = self.encoder.encode(part, self.pooling, max_length=self.max_length)
            reps = np.fromiter((counts[s] for s in part), dtype=np.int64, count=len(part))
            yield np.repeat(vecs, reps, axis=0) if reps.max() > 1 else vecs

    def fields(self) -> dict[str, Any]:
        """The encoder, pooling and max length, and the sentences' description and sha256."""
        described = self.encoder.describe()
        return {
            "model": self.encoder.identity, "model_name": self.encoder.name,
            "pooling": str(self.pooling), "max_length": int(self.max_length),
            "dtype": described.get("dtype", "float32"),
            "lowercase": bool(described.get("lowercase", False)),
            "fit_on": self.fit.description, "fit_unique": bool(self.fit.unique),
            "fit_data_sha256": self.fit.sha256,
        }

    def extra(self) -> dict[str, Any]:
        """Nothing more."""
        return {}


@dataclass(frozen=True)
class _FolderSource:
    """An encode folder's vectors, a shard at a time in ``chunk`` rows (``unique``: a text's
    repeats after its first row left out); model, pooling and max length from its recipe."""

    folder: EncodeFolder
    unique: bool = False
    chunk: int = _FIT_CHUNK
    param: ClassVar[str] = "embeddings"
    what: ClassVar[str] = "vectors"
    dim_of: ClassVar[str] = "the vectors' dimension"

    @classmethod
    def open(cls, embeddings: StrPath | EncodeFolder,
             settings: WhitenSettings | None = None) -> _FolderSource:
        """The folder as a source, checked against ``settings`` (``max_length``, when given,
        must be the folder's; a folder encoded with a post-processor is refused; L2-normalised
        vectors are a warning)."""
        settings = settings or WhitenSettings()
        folder = embeddings if isinstance(embeddings, EncodeFolder) else EncodeFolder.open(
            embeddings)
        r = folder.recipe
        if settings.max_length is not None and settings.max_length != r.max_length:
            raise ConfigError(f"the vectors were encoded with max_length={r.max_length}, not "
                              f"{settings.max_length}", param="max_length")
        if r.post:
            raise ConfigError(f"{folder.path} was encoded with post {r.post!r}; its shards hold "
                              "raw vectors but a whitening fitted on them would be applied "
                              "after that post-processor: encode without it", param="embeddings")
        if folder.vectors["normalized"]:
            warnings.warn(
                f"{folder.path} holds L2-normalised vectors: the whitening is fitted on them "
                "(its mean and covariance differ from the raw vectors'), so apply it to "
                "normalised vectors only; the map's metadata records fit_vectors.normalized=true",
                UserWarning, stacklevel=3)
        return cls(folder, settings.fit_unique)

    @property
    def dim(self) -> int | None:
        """The stored vectors' dimension."""
        return self.folder.dim

    @property
    def n_rows(self) -> int:
        """Every row of the folder (before ``unique``)."""
        return self.folder.total_rows

    def batches(self) -> Iterator[np.ndarray]:
        """Each shard's vectors in ``chunk`` rows."""
        for x in self._shards():
            for start in range(0, x.shape[0], self.chunk):
                yield x[start:start + self.chunk]

    def _shards(self) -> Iterator[np.ndarray]:
        if not self.unique:
            yield from (x for _, _, x in self.folder.shards(texts=False))
            return
        seen: set[str] = set()
        for _, texts, x in self.folder.shards():
            keep = []
            for i, t in enumerate(texts):
                if t not in seen:
                    seen.add(t)
                    keep.append(i)
            yield x[keep]

    def fields(self) -> dict[str, Any]:
        """The recipe's model, pooling, max length, dtype and casing; the folder and the sha256
        of its shards' checksums."""
        r = self.folder.recipe
        shards = "\n".join(str(e["sha256"]) for e in self.folder.manifest["shards"])
        return {
            "model": r.model_identity, "model_name": r.model, "pooling": r.pooling,
            "max_length": int(r.max_length), "dtype": r.dtype, "lowercase": bool(r.lowercase),
            "fit_on": f"embeddings:{self.folder.path.resolve()}",
            "fit_unique": bool(self.unique), "fit_data_sha256": sha256_text(shards),
        }

    def extra(self) -> dict[str, Any]:
        """How the vectors are stored (``fit_vectors``: dtype, L2-normalised or raw)."""
        return {"fit_vectors": self.folder.vectors}


def _fit_blocks(blocks: Iterable[np.ndarray], whitening: Whitening | None = None, *,
               param: str = "embeddings", what: str = "vectors") -> Whitening:
    """``partial_fit`` ``whitening`` (default ``Whitening()``) on each block; the map is derived
    at the end, so rank warnings and refusals come here (``param`` names the option at fault
    when there are no rows)."""
    w = check_params(whitening if whitening is not None else Whitening())
    seen = 0
    for x in blocks:
        w.partial_fit(x)
        seen += x.shape[0]
    if seen == 0:
        raise ConfigError(f"no {what} to fit the whitening on", param=param)
    try:
        _ = w.kernel_  # derive now, so that rank warnings (and refusals) come at fit time
    except PostprocessError as e:  # WhitenSettings calls n_components k
        raise PostprocessError(str(e), param="k" if e.param == "n_components" else e.param
                               ) from None
    return w


def _fit_source(source: VectorSource, whitening: Whitening | None = None) -> Whitening:
    """Fit ``whitening`` (default ``Whitening()``) on the source's batches, ``k`` checked
    against its dimension first; the moments equal one ``fit`` on all the vectors (up to
    float64 rounding)."""
    w = check_params(whitening if whitening is not None else Whitening())
    if source.n_rows == 0:
        raise ConfigError(f"no {source.what} to fit the whitening on", param=source.param)
    k, dim = w.n_components, source.dim
    if isinstance(k, (int, np.integer)) and dim and k > dim:
        raise ConfigError(f"k={k} is larger than {source.dim_of} d={dim}; use k <= {dim} or "
                          "all", param="k")
    return _fit_blocks(source.batches(), w, param=source.param, what=source.what)


def fit_whitening(encoder: SentenceEncoder, pooling: str, sentences: Sequence[str],
                  whitening: Whitening | None = None, *, max_length: int = 64,
                  chunk: int = _FIT_CHUNK) -> Whitening:
    """Encode ``sentences`` and fit ``whitening`` on their vectors (:class:`_SentenceSource`;
    every occurrence counts)."""
    fit = FitSentences(list(sentences), "sentences")
    return _fit_source(_SentenceSource(encoder, Pooling(pooling), fit, max_length, chunk),
                      whitening)


def fit_whitening_shards(embeddings: StrPath | EncodeFolder,
                         whitening: Whitening | None = None, *, unique: bool = False,
                         chunk: int = _FIT_CHUNK) -> Whitening:
    """Fit ``whitening`` on every row of an encode folder (:class:`_FolderSource`;
    ``unique``: each text once)."""
    folder = embeddings if isinstance(embeddings, EncodeFolder) else EncodeFolder.open(
        embeddings)
    return _fit_source(_FolderSource(folder, unique, chunk), whitening)


@dataclass(frozen=True)
class _WhitenResult:
    """What :func:`run_whiten` wrote: the path, format, fitted estimator, metadata, the pooling
    and max length used, the model's name, and the fit sentences (None from an encode
    folder)."""

    path: Path
    format: str
    whitening: Whitening
    metadata: dict[str, Any]
    fit: FitSentences | None
    pooling: str
    max_length: int
    encoder_name: str

    @property
    def spec(self) -> str:
        """The map as a post-processing spec (``,norm`` when normalised)."""
        return describe_post(self.whitening) + (",norm" if self.metadata.get("normalize") else "")


def _whitening_metadata(whitening: Whitening, source: VectorSource, *,
                       normalize: bool = False) -> dict[str, Any]:
    """The metadata stored with an exported whitening map (checked when it is loaded)."""
    return {
        "kind": "whitening",
        "beta": float(whitening.beta),
        "gamma": float(whitening.gamma),
        "k": int(whitening.n_components_),
        "k_spec": "all" if whitening.n_components is None else str(whitening.n_components_),
        "eps": float(whitening.eps),
        **source.fields(),
        "n_samples": int(whitening.n_samples_seen_),
        "normalize": bool(normalize),
        **source.extra(),
        "embedkit_version": __version__,
    }


def export_format(out: StrPath, fmt: str | None) -> str:
    """The export format: ``fmt`` if given (checked against a known suffix), else by suffix
    (``.npz``, ``.faiss``; anything else safetensors)."""
    suffix_fmt = _SUFFIX_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        return suffix_fmt or "safetensors"
    if fmt not in _EXPORT_FORMATS:
        raise ConfigError(f"format {fmt!r}: valid formats: {', '.join(_EXPORT_FORMATS)}",
                          param="format")
    if suffix_fmt is not None and fmt != suffix_fmt and fmt != "faiss":
        raise ConfigError(f"out {str(out)!r} has the suffix {Path(out).suffix!r} (for "
                          f"{suffix_fmt}) but the format is {fmt}; make them agree",
                          param="format")
    return fmt


def _export_whitening(out: StrPath, amap: AffineMap, fmt: str, *,
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
        save_st_folder(out, described["path"], STFolderSettings(
            pooling, max_length, lowercase=bool(described.get("lowercase", False)),
            kernel=amap.kernel, bias=amap.bias, normalize=amap.normalize,
            json_files={"embedkit_whitening.json": {**meta, "d": amap.d, "k": amap.k},
                        **({"embedkit_threshold.json": threshold} if threshold else {})},
            card=render_model_card(replace(_whitening_card(meta, amap, encoder),
                                           threshold=threshold))))
    return out


def _whitening_card(meta: dict[str, Any], amap: AffineMap, encoder: SentenceEncoder) -> CardInfo:
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
    from embedkit.runs.pair_extras import selection_split

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


def _sentence_source(encoder: SentenceEncoder | EncoderConfig | str | None, fit_on: str,
                     settings: WhitenSettings, fmt: str, pooling: str | None,
                     data: DataOptions) -> _SentenceSource:
    """The ``fit_on`` sentences collected, the encoder built, pooling and max length chosen."""
    if encoder is None:
        raise ConfigError("fitting on sentences needs the model", param="model")
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
    return _SentenceSource(enc, pool, fit, min(int(wanted), model_max))


def _folder_source(embeddings: StrPath, settings: WhitenSettings, fmt: str, *,
                   pooling: str | None, calibrate: str | None) -> _FolderSource:
    """The encode folder as a source; what needs the model is refused."""
    if fmt == "sentence-transformers":
        raise ConfigError("whitening from embeddings exports safetensors, npz or faiss; for a "
                          "sentence-transformers folder fit from sentences", param="format")
    if pooling is not None:
        raise ConfigError("the pooling of an encode folder's vectors comes from its manifest; "
                          "give none", param="pooling")
    if calibrate:
        raise ConfigError("a threshold is calibrated by encoding the task's pairs with the "
                          "model; fit from sentences to calibrate", param="calibrate")
    settings.whitening()  # its parameters checked before the folder is read
    return _FolderSource.open(embeddings, settings)


def run_whiten(encoder: SentenceEncoder | EncoderConfig | str | None, fit_on: str | None,
               out: StrPath, settings: WhitenSettings | None = None, *,
               pooling: str | None = None, format: str | None = None,
               data: DataOptions | None = None, command: str | None = None,
               calibrate: str | None = None,
               embeddings: StrPath | None = None) -> _WhitenResult:
    """Fit the map on a source of vectors and write it; what was written.

    The source is the ``fit_on`` sentences encoded by ``encoder`` (:class:`_SentenceSource`), or
    the encode folder ``embeddings`` (:class:`_FolderSource`: no encoder, no pooling; a
    ``settings.max_length``, when given, must be the folder's; safetensors, npz or faiss only).
    Settings and the format are checked before anything is loaded or encoded.
    """
    settings = settings or WhitenSettings()
    data = data or DataOptions()
    fmt = export_format(out, format)
    if (fit_on is None) == (embeddings is None):
        raise ConfigError("give the sentences to fit on or an encode folder, not "
                          f"{'both' if fit_on is not None else 'neither'}", param="fit_on")
    whitening = settings.whitening()
    source: VectorSource
    if embeddings is not None:
        source = _folder_source(embeddings, settings, fmt, pooling=pooling, calibrate=calibrate)
    else:
        source = _sentence_source(encoder, str(fit_on), settings, fmt, pooling, data)
    w = _fit_source(source, whitening)
    meta = _whitening_metadata(w, source, normalize=settings.normalize)
    if command is not None:
        meta["command"] = command
    amap = AffineMap(w.kernel_, w.bias_, settings.normalize)
    max_length = int(meta["max_length"])
    threshold = None
    if not isinstance(source, _SentenceSource):
        path = _export_whitening(out, amap, fmt, metadata=meta)
        return _WhitenResult(path, fmt, w, meta, None, str(meta["pooling"]), max_length,
                            str(meta["model_name"]))
    if calibrate:
        threshold = calibrate_threshold(source.encoder, source.pooling, amap, calibrate,
                                        max_length, data)
        meta["threshold"] = threshold
    path = _export_whitening(out, amap, fmt, metadata=meta, encoder=source.encoder,
                            pooling=source.pooling, max_length=max_length, threshold=threshold)
    return _WhitenResult(path, fmt, w, meta, source.fit, str(source.pooling), max_length,
                        source.encoder.name)
