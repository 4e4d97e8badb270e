"""The sources of an index and a FAISS index filled from one: the one training, adding and
tuning of every index.

A :class:`VectorSource` holds rows ``(id, text, vector)``: it streams them as ``(ids, texts,
vectors)`` batches and reads the vectors of given row numbers. Vectors in memory
(:class:`ArraySource`) are one source, an encode folder's shards
(:class:`~embedkit.store.encode_folder.EncodeFolder`, prepared by :func:`folder_source`: its
recipe and post-processor) another. :func:`fill_index` trains an
index on a seeded sample of the rows (:func:`~embedkit.store.encode_folder.draw_rows`, the one
row sampler), adds the batches in bounded memory (optionally into on-disk inverted lists, as
faiss's ``contrib.ondisk.merge_ondisk`` does), each text once (its first row), and chooses the
search default on the way (:class:`~embedkit.retrieval.tuning.RecallProbe`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embedkit.errors import ConfigError
from embedkit.postprocess.affine import AffineMap
from embedkit.provenance import sha256_file
from embedkit.retrieval.faiss_ops import (
    add_vectors,
    check_metric,
    faiss,
    ivf_nlist,
    train_index,
    train_sample_size,
    tunable_parameters,
)
from embedkit.retrieval.persistence import IVFDATA_FILE
from embedkit.retrieval.quantized import (
    DEFAULT_RESCORE,
    QuantizedIndex,
    make_quantized,
    tune_quantized,
)
from embedkit.retrieval.tuning import RowProbe
from embedkit.store.encode_folder import MANIFEST, EncodeFolder, draw_rows
from embedkit.store.recipe import POST_FILE, Recipe

if TYPE_CHECKING:
    from embedkit.store.fitted import FittedPost

__all__ = ["IVFDATA_FILE", "ArraySource", "Prepared", "VectorSource", "build_quantized",
           "check_on_disk", "dedupe_rows", "fill_index", "folder_source", "train_sample_size"]

logger = logging.getLogger(__name__)

Batch = tuple[Sequence[Any], list[str], np.ndarray]


class VectorSource(Protocol):
    """Rows of ``(id, text, vector)`` to index, streamed and sampled."""

    @property
    def dim(self) -> int: ...
    @property
    def total_rows(self) -> int: ...
    def batches(self) -> Iterator[Batch]: ...
    def rows(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class ArraySource:
    """Vectors in memory (n x d) and their texts and ids (None: no ids): one batch."""

    x: np.ndarray
    texts: list[str]
    ids: Sequence[str | int | None] | None = None

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def total_rows(self) -> int:
        return int(self.x.shape[0])

    def batches(self) -> Iterator[Batch]:
        yield (self.ids if self.ids is not None else [None] * len(self.texts)), self.texts, self.x

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.x if len(rows) == self.x.shape[0] else self.x[rows])


def dedupe_rows(texts: list[str], ids: Sequence[str | int | None] | None,
                seen: Collection[str]) -> tuple[list[int], list[str], list[str | None]]:
    """Rows to keep: texts not in ``seen`` and not repeated earlier in the batch (each text's
    first row), with their texts and ids (as strings)."""
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(texts):
            raise ConfigError(f"got {len(texts)} texts but {len(ids)} ids", param="ids")
    keep: list[int] = []
    kept_texts: list[str] = []
    kept_ids: list[str | None] = []
    batch: set[str] = set()
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"text {i} is {type(t).__name__}, not a string", param="texts")
        if t in seen or t in batch:
            continue
        batch.add(t)
        keep.append(i)
        kept_texts.append(t)
        u = ids[i] if ids is not None else None
        kept_ids.append(None if u is None else str(u))
    return keep, kept_texts, kept_ids


@dataclass
class _Filled:
    """What :func:`fill_index` kept: texts and ids by position, the search default chosen, the
    training vectors used, the seconds it took, and the on-disk lists file (or None)."""

    texts: list[str] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)
    search_defaults: dict[str, Any] | None = None
    trained_on: int | None = None
    seconds: float = 0.0
    ivfdata: Path | None = None
    seen: set[str] = field(default_factory=set)

    def keep(self, ids: Sequence[Any], texts: list[str]) -> list[int]:
        """The rows of a batch to add (each text once), recorded."""
        rows, kept_texts, kept_ids = dedupe_rows(list(texts), ids, self.seen)
        self.seen.update(kept_texts)
        self.texts.extend(kept_texts)
        self.user_ids.extend(kept_ids)
        return rows


def _train(index: Any, source: VectorSource, factory: str, train_size: int | None,
           seed: int) -> int | None:
    if index.is_trained:
        return None
    quantized = isinstance(index, QuantizedIndex)  # its quantiser, centre and int8 scales
    size = (index.train_sample_size(source.total_rows, train_size) if quantized else
            train_sample_size(index, source.total_rows, train_size))
    sample = source.rows(draw_rows(source.total_rows, size, seed))
    logger.info("training %r on %d sampled vectors (seed %d)", factory, sample.shape[0], seed)
    if quantized:
        index.train(sample, seed=seed, train_size=sample.shape[0])
    else:
        train_index(index, sample, factory, sample.shape[0], seed)
    return int(sample.shape[0])


def _add_in_memory(index: Any, source: VectorSource, filled: _Filled, probe: RowProbe | None,
                   progress: bool) -> None:
    for n, (ids, texts, x) in enumerate(source.batches(), 1):
        first = len(filled.texts)
        keep = filled.keep(ids, texts)
        if probe is not None:
            probe.see(x, keep, first)
        if keep:
            add_vectors(index, np.ascontiguousarray(x if len(keep) == x.shape[0] else x[keep]),
                        progress)
        logger.info("added batch %d (%d vectors in all)", n, index.ntotal)


def _add_on_disk(index: Any, source: VectorSource, filled: _Filled, work: Path,
                 probe: RowProbe | None) -> Path:
    """Fill a copy of the trained index per batch, then merge their lists into on-disk ones
    (``faiss.contrib.ondisk.merge_ondisk``); returns the ``.ivfdata`` file."""
    from faiss.contrib.ondisk import merge_ondisk

    trained = faiss.serialize_index(index)  # clone_index cannot copy the normalisation step
    blocks = []
    for n, (ids, texts, x) in enumerate(source.batches(), 1):
        start = len(filled.texts)
        keep = filled.keep(ids, texts)
        if probe is not None:
            probe.see(x, keep, start)
        if not keep:
            continue
        block = faiss.deserialize_index(trained)
        block.add_with_ids(np.ascontiguousarray(x[keep]),
                           np.arange(start, start + len(keep), dtype=np.int64))
        blocks.append(str(work / f"block-{n:05d}.index"))
        faiss.write_index(block, blocks[-1])
        del block
    data = work / IVFDATA_FILE
    if blocks:
        merge_ondisk(index, blocks, str(data))
    else:  # an empty corpus: empty on-disk lists
        ivf = faiss.extract_index_ivf(index)
        lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(data))
        ivf.replace_invlists(lists, True)
        lists.this.disown()
    return data


def check_on_disk(index: Any, factory: str) -> None:
    """Refuse on-disk inverted lists for an index that cannot keep them."""
    if ivf_nlist(index) is None:
        raise ConfigError(f"on-disk inverted lists need an IVF factory, not {factory!r}",
                          param="on_disk")
    if isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQR):
        raise ConfigError("IVF...PQR indexes cannot keep their lists on disk", param="on_disk")


def fill_index(index: Any, source: VectorSource, factory: str, metric: str,
               transform: AffineMap | None, *, train_size: int | None = None, seed: int = 0,
               tune: bool = True, progress: bool = False,
               on_disk: Path | None = None, lists_at: Path | None = None) -> _Filled:
    """Train ``index`` (when it needs it) on a seeded sample of ``source``'s rows, add its
    batches (each text once: its first row), and, with ``tune``, choose the default
    ``nprobe`` / ``efSearch`` against exact search on a seeded sample of the rows.

    ``on_disk``: a work folder where the inverted lists are merged into ``lists.ivfdata``
    (IVF factories); ``lists_at``: where the index folder will hold that file.
    """
    quantized = isinstance(index, QuantizedIndex)
    if on_disk is not None:
        if quantized:
            raise ConfigError("on-disk inverted lists are for float IVF indexes; a quantised "
                              "index keeps its rescoring vectors on disk already",
                              param="on_disk")
        check_on_disk(index, factory)
    start = time.perf_counter()
    filled = _Filled(trained_on=_train(index, source, factory, train_size, seed))
    probe = None
    names = index.tunable() if quantized else tunable_parameters(index)
    if tune and {"nprobe", "efSearch"} & names:
        probe = RowProbe(source.total_rows, source.rows, metric, transform, seed=seed)
    if on_disk is not None:
        filled.ivfdata = _add_on_disk(index, source, filled, on_disk, probe)
        if lists_at is not None:
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            lists.filename = str(lists_at)  # where the folder will hold it
    else:
        _add_in_memory(index, source, filled, probe, progress)
    if probe is not None:
        filled.search_defaults = (tune_quantized(index, None, transform, seed=seed,
                                                 probe=probe.probe)
                                  if quantized else probe.probe.choose(index, factory))
    filled.seconds = time.perf_counter() - start
    return filled


def build_quantized(x: np.ndarray, factory: str, metric: str, transform: AffineMap | None, *,
                    vectors: str, rescore: int = DEFAULT_RESCORE, rescore_with: str = "float",
                    train_size: int | None = None, seed: int = 0,
                    centre: bool = False) -> QuantizedIndex:
    """Make a quantised index and fill it with the rows of ``x`` through the one builder's
    :func:`~embedkit.retrieval.shards.fill_index` (trained on a seeded sample; no tuning)."""
    index = make_quantized(x.shape[1], factory, metric, transform, vectors=vectors,
                           rescore=rescore, rescore_with=rescore_with, centre=centre)
    names = [str(i) for i in range(x.shape[0])]
    fill_index(index, ArraySource(np.ascontiguousarray(x, dtype=np.float32), names),
               index.factory, metric, transform, train_size=train_size, seed=seed, tune=False)
    return index


@dataclass
class Prepared:
    """A vector source ready to index: its rows, the recipe of its vectors (the corpus entry
    still without ``n_indexed``), the metric, the map baked in, and the post-processor's file:
    ``post`` to write, or ``post_file`` to copy (an encode folder's own)."""

    source: VectorSource
    recipe: Recipe
    metric: str
    amap: AffineMap | None
    post: FittedPost | None = None
    post_file: Path | None = None
    progress: bool = False


# --------------------------------------------------------------------------------------------
# an encode folder as the source


class _FolderModel:
    """The model of an encode folder's recipe, as :func:`~embedkit.store.fitted.prepare_post`
    checks a transform file against it."""

    def __init__(self, recipe: Recipe) -> None:
        self.name, self.path, self.identity = recipe.model, recipe.model_path, recipe.model_identity

    def describe(self) -> dict[str, Any]:
        return {"identity": self.identity, "path": self.path}


def _fitted_on_folder(folder: EncodeFolder, force: bool) -> Callable[[dict[str, Any], str],
                                                                     dict[str, Any]]:
    """The check :func:`prepare_post` makes of each transform file beyond model, pooling and
    dimension: fitted on vectors like the folder's (max length, dtype, casing, raw or
    L2-normalised; ``force`` warns instead). A file fitted on the folder's weights (its model
    identity also naming the settings around them) is checked as the folder's model."""
    from embedkit.postprocess import CompatibilityWarning

    r = folder.recipe
    have = "L2-normalised" if folder.vectors["normalized"] else "raw"

    def check(meta: dict[str, Any], where: str) -> dict[str, Any]:
        normalized = bool((meta.get("fit_vectors") or {}).get("normalized", False))
        checks = [("max_length", meta.get("max_length"), r.max_length),
                  ("dtype", meta.get("dtype"), r.dtype),
                  ("lowercase", meta.get("lowercase"), r.lowercase),
                  ("vectors", "L2-normalised" if normalized else "raw", have)]
        problems = [f"{key}={fitted} but the shards of {folder.path} hold {key}={value}"
                    for key, fitted, value in checks
                    if fitted is not None and str(fitted) != str(value)]
        if problems:
            message = (f"{where}: transform file was fitted on vectors with "
                       + "; and ".join(problems))
            if not force:
                raise ConfigError(message + "; fit it on these shards (embedkit whiten with "
                                  "the folder as embeddings) or use force=True", param="post")
            warnings.warn(message + " (used anyway: force=True)", CompatibilityWarning,
                          stacklevel=4)
        stored = str(meta.get("model_identity") or meta.get("model") or "")
        if stored.split(";")[0] == r.model_identity:  # the folder's weights
            return {**meta, "model_identity": r.model_identity}
        return meta

    return check


def _folder_post(folder: EncodeFolder, value: str | None, *, metric: str,
                 force: bool) -> FittedPost | None:
    """The post-processor an index built from ``folder`` bakes in when ``value`` is given: its
    transform files (and ``norm`` steps), each checked against the folder's vectors. Nothing
    is fitted here: a chain to fit is refused."""
    from embedkit.postprocess import pipeline_learns, resolve_post
    from embedkit.store.fitted import is_none, prepare_post

    if is_none(value):
        return None
    value = str(value).strip()
    if folder.recipe.post:
        raise ConfigError(f"{folder.path} was encoded with post {folder.recipe.post!r}, which "
                          "its indexes apply; encode it without one to choose the post-processor"
                          " when indexing", param="post")
    if folder.vectors["normalized"]:
        raise ConfigError(f"{folder.path} holds L2-normalised vectors but queries are encoded "
                          "raw, and a post-processor maps both before the cosine normalises: "
                          "encode without normalize to index with one", param="post")
    if pipeline_learns(resolve_post(value)):
        raise ConfigError(f"post {value!r} has steps to fit, and an index built from shards "
                          "fits nothing: give a transform file fitted on them (embedkit whiten "
                          f"with {folder.path} as embeddings)", param="post")
    return prepare_post(value, encoder=_FolderModel(folder.recipe),
                        pooling=folder.recipe.pooling, dim=folder.dim, metric=metric,
                        force=force, check_file=_fitted_on_folder(folder, force))


def folder_source(embeddings: EncodeFolder | os.PathLike[str], *, post: str | None,
                   metric: str | None, force: bool) -> Prepared:
    """An encode folder's shards, its manifest's recipe (the corpus entry naming the folder)
    and its post-processor, or the one ``post`` gives."""
    # None (the command line's default): cosine, as the encode folder records no declared
    # similarity of its model
    metric = check_metric(metric or "cosine")
    folder = embeddings if isinstance(embeddings, EncodeFolder) else EncodeFolder.open(
        embeddings)
    if folder.vectors["normalized"] and metric != "cosine":
        raise ConfigError(
            f"{folder.path} holds L2-normalised vectors but queries are encoded raw: only the "
            f"cosine metric (which normalises both) searches them as they were stored, not "
            f"{metric}; use metric cosine or encode without normalize", param="metric")
    given = _folder_post(folder, post, metric=metric, force=force)
    base = dict(folder.recipe.corpus[0]) if folder.recipe.corpus else {}
    recipe = dataclasses.replace(folder.recipe, corpus=({
        **base, "embeddings": str(folder.path.resolve()),
        "manifest_sha256": sha256_file(folder.path / MANIFEST), "n_texts": folder.total_rows},))
    if given is not None:
        recipe = dataclasses.replace(recipe, post=given.spec, post_file=POST_FILE,
                                     post_sources=given.sources)
        return Prepared(folder, recipe, metric, given.map, post=given)
    return Prepared(folder, recipe, metric, folder.post_map(),
                     post_file=folder.path / POST_FILE if folder.recipe.post_file else None)
